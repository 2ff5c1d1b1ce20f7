// Package deployspec is the service deployment spec: the document a user
// writes for `outpost deploy apply -f app.yaml`, that the hub stores and
// rolls out, and that the agent runs. It owns the spec's types, parsing
// (YAML or JSON, unknown keys refused, every problem reported at once with
// the key it is about), defaults, validation, Kubernetes-style resource
// quantities, the canonical JSON form and the revision hash that tells a
// device its workload changed.
//
// The agent imports it, so it must import nothing but the standard library,
// go.yaml.in/yaml/v3 and internal/rollout: never Gin, gRPC, SQL drivers or
// the hub's packages. The reference for users is docs/deploy-spec.md.
package deployspec
