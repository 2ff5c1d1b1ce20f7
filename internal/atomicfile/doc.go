// Package atomicfile replaces small files so that a crash or power cut
// leaves either the old content or the new one, never a mix: write a
// temporary file beside the target, sync it, rename it over the target, sync
// the directory. The agent uses it for agent.yaml and the seq reservation,
// the hub for the generated admin password, the CLI for the saved login.
//
// It imports the standard library only.
package atomicfile
