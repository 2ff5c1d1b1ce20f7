package cli

import "github.com/spf13/cobra"

// newDemoCmd is a placeholder until the real command lands.
func newDemoCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "demo", Short: "Run a hub with simulated devices"}
}
