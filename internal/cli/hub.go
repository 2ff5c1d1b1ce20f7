package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/spf13/cobra"
)

func newHubCmd(g *globals) *cobra.Command {
	cfg := hub.Default()
	var logLevel string
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the hub: embedded MQTT broker, SQLite store and REST API",
		Long: `Run the Outpost hub in the foreground until interrupted.

On first start the hub creates DIR (--data), its SQLite database, and an admin
user whose generated password it writes to DIR/admin-password (mode 0600);
--admin-password-file sets the password instead. Devices connect to the MQTT
listener (--mqtt) with the credentials they get from "outpost-agent join".`,
		Example: `  outpost hub --data ./hub-data
  outpost hub --data /var/lib/outpost --http :8080 --mqtt :1883 \
      --public-url https://hub.example.com --mqtt-public-url mqtt://hub.example.com:1883`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(g.stderr, logLevel)
			if err != nil {
				return err
			}
			h, err := hub.New(cmd.Context(), cfg, logger)
			if err != nil {
				return err
			}
			if pw, ok := h.GeneratedAdminPassword(); ok && pw != "" {
				fmt.Fprintf(g.stderr, "First start: the admin password was generated and written to %s/%s\n", cfg.DataDir, hub.AdminPasswordFileName)
			}
			grpcNote := ""
			if t := h.GRPCTarget(); t != "" {
				grpcNote = ", gRPC " + t
			}
			fmt.Fprintf(g.stderr, "Outpost hub: API %s, MQTT %s, data %s%s\n", h.HTTPURL(), h.MQTTURL(), cfg.DataDir, grpcNote)
			return h.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (database, generated admin password)")
	f.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "REST API listen address")
	f.StringVar(&cfg.MQTTAddr, "mqtt", cfg.MQTTAddr, "embedded MQTT broker listen address")
	f.StringVar(&cfg.GRPCAddr, "grpc", hub.DefaultGRPCAddr, `gRPC API listen address; "" or "off" disables it`)
	f.StringVar(&cfg.Registry, "registry", cfg.Registry, `service registry backend: "" (the hub's store) or etcd://HOST:PORT[/PREFIX]`)
	f.StringVar(&cfg.CoAPAddr, "coap", cfg.CoAPAddr, "UDP listen address of the CoAP transport for OTA metadata and artifacts, e.g. :5683 (default: off)")
	f.StringVar(&cfg.AdminPasswordFile, "admin-password-file", "", "file holding the admin password (default: generate one on first start)")
	f.StringVar(&cfg.PublicURL, "public-url", "", "hub URL as devices reach it (default: the Host of each request)")
	f.StringVar(&cfg.MQTTPublicURL, "mqtt-public-url", "", "broker URL as devices reach it (default: the request's host and the --mqtt port)")
	f.DurationVar(&cfg.JoinTokenTTL, "join-token-ttl", cfg.JoinTokenTTL, "lifetime of device join tokens")
	f.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "lifetime of API tokens issued by login")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// newLogger returns a text logger on w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
