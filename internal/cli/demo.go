package cli

import (
	"github.com/outpost-edge/outpost/internal/demo"
	"github.com/spf13/cobra"
)

func newDemoCmd(g *globals) *cobra.Command {
	o := demo.Options{Devices: 3, HTTPAddr: "127.0.0.1:8080", MQTTAddr: "127.0.0.1:1883", Version: Version}
	var logLevel string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a hub and simulated devices in one process",
		Long: `Run a hub plus N simulated devices in one process, on the embedded defaults
(MQTT broker and SQLite). The devices are registered and joined like real ones
and run the real agent code with simulated temperature, humidity and vibration
sensors. The demo prints the API URL, the admin password and commands to try.

If the default ports are busy the demo picks free ones and prints them.
Without --data it works in a temporary directory removed on exit.`,
		Example: `  outpost demo
  outpost demo --devices 10
  outpost demo --devices 3 --duration 30s     # stops by itself and exits 0
  outpost demo --data ./demo-data --http 127.0.0.1:9080 --mqtt 127.0.0.1:9883`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(g.stderr, logLevel)
			if err != nil {
				return err
			}
			f := cmd.Flags()
			o.FallbackToFreePort = !f.Changed("http") && !f.Changed("mqtt")
			return demo.Run(cmd.Context(), o, g.stdout, logger)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Devices, "devices", o.Devices, "number of simulated devices (1 to 1000)")
	f.DurationVar(&o.Duration, "duration", 0, "stop after this long and exit 0 (default: run until interrupted)")
	f.StringVar(&o.DataDir, "data", "", "keep the hub's and agents' data here (default: a temporary directory)")
	f.StringVar(&o.HTTPAddr, "http", o.HTTPAddr, "REST API listen address")
	f.StringVar(&o.MQTTAddr, "mqtt", o.MQTTAddr, "MQTT broker listen address")
	f.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	return cmd
}
