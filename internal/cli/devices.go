package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// device is a Device of the REST API.
type device struct {
	ID           string            `json:"id"`
	Labels       map[string]string `json:"labels"`
	CreatedAt    apiTime           `json:"created_at"`
	Joined       bool              `json:"joined"`
	Online       bool              `json:"online"`
	LastSeen     apiTime           `json:"last_seen"`
	AgentVersion string            `json:"agent_version"`
	Spool        *spoolReport      `json:"spool"`
}

// spoolReport is the agent's last report of its store-and-forward backlog.
type spoolReport struct {
	Points     uint64  `json:"points"`
	Bytes      uint64  `json:"bytes"`
	Dropped    uint64  `json:"dropped"`
	Oldest     apiTime `json:"oldest"`
	ReportedAt apiTime `json:"reported_at"`
}

// joinResponse is the body of POST /api/v1/devices and of
// POST /api/v1/devices/{id}/join-token.
type joinResponse struct {
	Device             device  `json:"device"`
	JoinToken          string  `json:"join_token"`
	JoinTokenExpiresAt apiTime `json:"join_token_expires_at"`
	JoinCommand        string  `json:"join_command"`
}

func newDevicesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "devices",
		Aliases: []string{"device", "dev"},
		Short:   "Register, list, inspect, label and delete devices",
		Long: `devices manages the devices registered with the hub. "add" registers a device and
prints a one-time join token and the command that joins the device to the hub.`,
		Example: `  outpost devices add pump-7 --label site=plant-1
  outpost devices ls --label site=plant-1
  outpost devices show pump-7 -o json
  outpost devices label pump-7 line=3 old-
  outpost devices token pump-7
  outpost devices rm pump-7`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(
		newDevicesAddCmd(g),
		newDevicesListCmd(g),
		newDevicesShowCmd(g),
		newDevicesLabelCmd(g),
		newDevicesRemoveCmd(g),
		newDevicesTokenCmd(g),
	)
	return cmd
}

func newDevicesAddCmd(g *globals) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "add ID",
		Short: "Register a device and print its join token",
		Long: `add registers a device with the hub and prints a one-time join token, its expiry and
the exact "outpost-agent join" command to run on the device. The token works once.

Ids are 1–64 characters of A-Z a-z 0-9 - _ . and do not start with - or .`,
		Example: `  outpost devices add pump-7
  outpost devices add pump-7 --label site=plant-1 --label line=3
  outpost devices add pump-7 -o json | jq -r .join_command`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseLabels(labels)
			if err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			req := struct {
				ID     string            `json:"id"`
				Labels map[string]string `json:"labels,omitempty"`
			}{ID: args[0], Labels: lm}
			var resp joinResponse
			raw, err := c.doJSON(cmd.Context(), http.MethodPost, pathDevices, nil, req, &resp)
			if err != nil {
				return fmt.Errorf("adding device %q: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			return g.printJoin(fmt.Sprintf("Added device %s.", resp.Device.ID), &resp)
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "label as key=value (repeatable)")
	return cmd
}

func newDevicesTokenCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "token ID",
		Short: "Issue a fresh one-time join token for a device",
		Long: `token issues a new one-time join token for an existing device, e.g. to re-provision it,
and prints it with the join command. Earlier unused tokens of the device stop working.`,
		Example: `  outpost devices token pump-7
  outpost devices token pump-7 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var resp joinResponse
			raw, err := c.doJSON(cmd.Context(), http.MethodPost, devicePath(args[0], "/join-token"), nil, nil, &resp)
			if err != nil {
				return fmt.Errorf("issuing join token for device %q: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			return g.printJoin(fmt.Sprintf("New join token for device %s; earlier unused tokens no longer work.", resp.Device.ID), &resp)
		},
	}
}

// printJoin prints a join response for people.
func (g *globals) printJoin(headline string, r *joinResponse) error {
	expiry := "unknown"
	if !r.JoinTokenExpiresAt.IsZero() {
		expiry = r.JoinTokenExpiresAt.Format(time.RFC3339)
	}
	_, err := fmt.Fprintf(g.stdout,
		"%s\nJoin token (one-time, expires %s):\n  %s\nRun on the device:\n  %s\n",
		sanitize(headline), expiry, sanitize(r.JoinToken), sanitize(r.JoinCommand))
	return err
}

func newDevicesListCmd(g *globals) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List devices",
		Long: `ls lists the devices, sorted by id. With --label, only devices carrying every given
label are listed.`,
		Example: `  outpost devices ls
  outpost devices ls --label site=plant-1
  outpost devices ls -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := parseLabels(labels); err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var q url.Values
			if len(labels) > 0 {
				q = url.Values{"label": labels}
			}
			var resp struct {
				Devices []device `json:"devices"`
			}
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, pathDevices, q, nil, &resp)
			if err != nil {
				return fmt.Errorf("listing devices: %w", err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			now := g.now()
			rows := make([][]string, 0, len(resp.Devices))
			for _, d := range resp.Devices {
				rows = append(rows, []string{d.ID, yesNo(d.Online), relativeTime(d.LastSeen.Time, now), formatLabels(d.Labels)})
			}
			return writeTable(g.stdout, []string{"ID", "ONLINE", "LAST SEEN", "LABELS"}, rows)
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "only devices with this key=value label (repeatable, all must match)")
	return cmd
}

func newDevicesShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Aliases: []string{"get"},
		Short:   "Show one device",
		Example: `  outpost devices show pump-7
  outpost devices show pump-7 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var d device
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, devicePath(args[0], ""), nil, nil, &d)
			if err != nil {
				return fmt.Errorf("showing device %q: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			now := g.now()
			withAge := func(t time.Time) string {
				if t.IsZero() {
					return "never"
				}
				return t.Format(time.RFC3339) + " (" + relativeTime(t, now) + ")"
			}
			agent := d.AgentVersion
			if agent == "" {
				agent = "-"
			}
			fields := [][2]string{
				{"ID", d.ID},
				{"Labels", formatLabels(d.Labels)},
				{"Created", withAge(d.CreatedAt.Time)},
				{"Joined", yesNo(d.Joined)},
				{"Online", yesNo(d.Online)},
				{"Last seen", withAge(d.LastSeen.Time)},
				{"Agent version", agent},
			}
			if sp := d.Spool; sp != nil {
				backlog := "none"
				if !sp.Oldest.IsZero() {
					backlog = "oldest from " + withAge(sp.Oldest.Time)
				}
				fields = append(fields,
					[2]string{"Spool depth", fmt.Sprintf("%d points, %d bytes", sp.Points, sp.Bytes)},
					[2]string{"Spool dropped", fmt.Sprint(sp.Dropped)},
					[2]string{"Spool backlog", backlog},
					[2]string{"Spool reported", withAge(sp.ReportedAt.Time)},
				)
			}
			return writeFields(g.stdout, fields)
		},
	}
}

func newDevicesLabelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "label ID KEY=VALUE... KEY-...",
		Aliases: []string{"labels"},
		Short:   "Set and remove a device's labels",
		Long: `label changes a device's labels: KEY=VALUE sets a label (adding it or changing its
value), KEY- removes it; labels not named stay as they are. All changes apply at
once, or none when the hub refuses one (it lists every problem). It prints the
device's labels afterwards.

Deployments pick devices by label: within moments the device gets the services of
the deployments whose selector it now matches, and loses those it no longer matches.
Rollouts already started keep the devices they began with.`,
		Example: `  outpost devices label pump-7 site=plant-2 line=3
  outpost devices label pump-7 line-
  outpost devices label pump-7 app=web tier- -o json`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			patch, err := parseLabelChanges(args[1:])
			if err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			req := struct {
				Labels map[string]*string `json:"labels"`
			}{patch}
			var d device
			raw, err := c.doJSON(cmd.Context(), http.MethodPatch, devicePath(id, ""), nil, req, &d)
			if err != nil {
				return fmt.Errorf("changing labels of device %q: %w", id, err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			_, err = fmt.Fprintf(g.stdout, "Labels of %s: %s\n", sanitize(d.ID), sanitize(formatLabels(d.Labels)))
			return err
		},
	}
}

// parseLabelChanges parses kubectl-style label arguments: KEY=VALUE sets a
// label, KEY- removes it (nil in the patch). The hub checks the documented
// limits; this only catches malformed arguments early.
func parseLabelChanges(args []string) (map[string]*string, error) {
	patch := make(map[string]*string, len(args))
	var errs []error
	for _, a := range args {
		k, v, set := strings.Cut(a, "=")
		if !set {
			var remove bool
			if k, remove = strings.CutSuffix(a, "-"); !remove {
				errs = append(errs, fmt.Errorf("%q: want KEY=VALUE to set a label or KEY- to remove one", a))
				continue
			}
		}
		if k == "" {
			errs = append(errs, fmt.Errorf("%q: key is empty", a))
			continue
		}
		if old, dup := patch[k]; dup {
			if same := (old == nil && !set) || (old != nil && set && *old == v); !same {
				errs = append(errs, fmt.Errorf("%q: label %q is changed twice", a, k))
			}
			continue
		}
		if set {
			patch[k] = &v
		} else {
			patch[k] = nil
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return patch, nil
}

func newDevicesRemoveCmd(g *globals) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"delete"},
		Short:   "Delete devices and their telemetry",
		Long: `rm deletes the given devices from the hub together with their stored telemetry; a
connected agent is disconnected. It does not ask for confirmation, so scripts can use
it; --yes is accepted for symmetry with other tools and changes nothing.`,
		Example: `  outpost devices rm pump-7
  outpost devices rm pump-7 pump-8 --yes`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			type deleted struct {
				ID      string `json:"id"`
				Deleted bool   `json:"deleted"`
			}
			var done []deleted
			for _, id := range args {
				if _, err := c.do(cmd.Context(), http.MethodDelete, devicePath(id, ""), nil, nil); err != nil {
					return fmt.Errorf("deleting device %q: %w", id, err)
				}
				if g.jsonOutput() {
					done = append(done, deleted{ID: id, Deleted: true})
					continue
				}
				if _, err := fmt.Fprintf(g.stdout, "deleted device %s\n", sanitize(id)); err != nil {
					return err
				}
			}
			if g.jsonOutput() {
				return writeJSONValue(g.stdout, done)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (rm never asks; accepted for scripts)")
	return cmd
}

// parseLabels parses key=value flags into a map. The hub checks the
// documented limits; this only catches malformed flags early.
func parseLabels(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(flags))
	var errs []error
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("--label %q: want key=value", f))
		case k == "":
			errs = append(errs, fmt.Errorf("--label %q: key is empty", f))
		default:
			if old, dup := m[k]; dup && old != v {
				errs = append(errs, fmt.Errorf("--label %q: key %q given twice", f, k))
				continue
			}
			m[k] = v
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}
