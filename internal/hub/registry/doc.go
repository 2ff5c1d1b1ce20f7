// Package registry is the hub's service registry: clients (and the hub, for
// workloads its agents run) register instances of a service, and Resolve
// and Watch return the healthy ones.
//
// Service holds the rules: validation, health states, TTL expiry and the
// hub-run http/tcp checks (Run). A Backend only stores instances: the
// built-in one keeps them in the hub's store (NewStoreBackend), the etcd
// one in an etcd cluster (NewEtcdBackend); Open picks one from the hub's
// --registry URL. backendtest is the suite every backend passes.
//
// The package must not import Gin, the REST or gRPC APIs or a store
// engine; it reaches the hub's store only through DocumentStore.
// docs/registry.md is the user guide.
package registry
