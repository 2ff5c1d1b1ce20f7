// Package config is the configuration of outpost-agent: the Config type
// (one field per key of agent.yaml, each documented), its defaults, its
// validation, and loading and saving agent.yaml.
//
// It owns nothing that runs. It imports the standard library, the YAML
// decoder, package protocol (for id and name rules) and atomicfile only; it
// must not import the agent's running parts (collect, report, uplink, …),
// so that every one of them may import it.
package config
