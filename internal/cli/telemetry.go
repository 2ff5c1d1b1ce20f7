package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// maxQueryLimit is the largest --limit the hub accepts.
const maxQueryLimit = 10000

// telemetryPoint is one point of GET /api/v1/devices/{id}/telemetry.
type telemetryPoint struct {
	Seq    uint64          `json:"seq"`
	Sensor string          `json:"sensor"`
	TS     apiTime         `json:"ts"`
	Value  json.RawMessage `json:"value"`
}

func newTelemetryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "telemetry",
		Aliases: []string{"tm"},
		Short:   "Read telemetry stored by the hub",
		Example: `  outpost telemetry query pump-7 --since 5m
  outpost telemetry query pump-7 --sensor temperature --since 2026-11-25T16:00:00Z --limit 100 -o json`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newTelemetryQueryCmd(g))
	return cmd
}

func newTelemetryQueryCmd(g *globals) *cobra.Command {
	var sensor, since, until string
	var limit int
	cmd := &cobra.Command{
		Use:   "query DEVICE",
		Short: "Query the telemetry of one device",
		Long: `query prints the points a device reported, ordered by time then sequence number.

--since and --until take an RFC 3339 time or a duration back from now such as 5m or 2h.
The hub defaults to the last hour (since 1h, with no end bound) and at most 1000 points;
--limit goes up to 10000.`,
		Example: `  outpost telemetry query pump-7
  outpost telemetry query pump-7 --sensor temperature --since 5m
  outpost telemetry query pump-7 --since 2026-11-25T16:00:00Z --until 2026-11-25T17:00:00Z --limit 5000 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			var errs []error
			if sensor != "" {
				q.Set("sensor", sensor)
			}
			for _, f := range []struct{ name, val string }{{"since", since}, {"until", until}} {
				if f.val == "" {
					continue
				}
				if err := checkTimeArg(f.val); err != nil {
					errs = append(errs, fmt.Errorf("--%s: %w", f.name, err))
					continue
				}
				q.Set(f.name, f.val)
			}
			if cmd.Flags().Changed("limit") {
				if limit < 1 || limit > maxQueryLimit {
					errs = append(errs, fmt.Errorf("--limit %d: want 1 to %d", limit, maxQueryLimit))
				} else {
					q.Set("limit", strconv.Itoa(limit))
				}
			}
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var resp struct {
				Device string           `json:"device"`
				Points []telemetryPoint `json:"points"`
			}
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, devicePath(args[0], "/telemetry"), q, nil, &resp)
			if err != nil {
				return fmt.Errorf("querying telemetry of device %q: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			rows := make([][]string, 0, len(resp.Points))
			for _, p := range resp.Points {
				rows = append(rows, []string{
					p.TS.Format("2006-01-02T15:04:05.000Z07:00"),
					p.Sensor,
					strconv.FormatUint(p.Seq, 10),
					formatValue(p.Value),
				})
			}
			return writeTable(g.stdout, []string{"TIME", "SENSOR", "SEQ", "VALUE"}, rows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&sensor, "sensor", "", "only points of this sensor")
	f.StringVar(&since, "since", "", "start: RFC 3339 time or duration back from now, e.g. 5m (hub default 1h)")
	f.StringVar(&until, "until", "", "end: RFC 3339 time or duration back from now (hub default: no end bound)")
	f.IntVar(&limit, "limit", 0, "at most this many points, 1–10000 (hub default 1000)")
	return cmd
}

// checkTimeArg accepts what the hub accepts for since/until: an RFC 3339
// time or a non-negative duration.
func checkTimeArg(s string) error {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return fmt.Errorf("%q: duration must not be negative", s)
		}
		return nil
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return nil
	}
	return fmt.Errorf("%q: want an RFC 3339 time such as 2026-11-25T16:00:00Z or a duration such as 5m", s)
}

// formatValue renders a point value for a table: numbers and booleans as
// sent, strings without quotes.
func formatValue(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	return string(v)
}
