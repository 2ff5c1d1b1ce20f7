// Package cli holds the cobra commands of the outpost binary: the hub, the
// demo, and the client commands that talk to a hub's REST API.
package cli

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/buildinfo"
)

// Version is the outpost version, set at build time with -ldflags "-X".
var Version = "0.1.0-dev"

// Run executes the outpost command line with args (without the program name)
// and returns the error to report; main turns it into an exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// NewRoot builds the outpost root command with every subcommand.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "outpost",
		Short:         "Outpost cloud–edge platform: hub, demo, simulator and fleet CLI",
		Long:          "outpost runs the hub (embedded MQTT broker, store and API) and talks to a running hub's REST API.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version + " (commit " + buildinfo.Commit() + ")",
		Example: `  outpost demo --devices 3
  outpost hub --data ./hub-data
  outpost login --hub http://127.0.0.1:8080 --user admin --password-stdin < ./hub-data/admin-password
  outpost devices add pump-7 --label site=plant-1
  outpost telemetry query pump-7 --since 5m -o json`,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.register(root)
	root.AddCommand(
		newHubCmd(g),
		newDemoCmd(g),
		newLoginCmd(g),
		newDevicesCmd(g),
		newTelemetryCmd(g),
		newShadowCmd(g),
		newKeysCmd(g),
		newArtifactsCmd(g),
		newSimCmd(g),
		newRolloutsCmd(g),
		newDeployCmd(g),
		newLogsCmd(g),
		newServicesCmd(g),
	)
	return root
}
