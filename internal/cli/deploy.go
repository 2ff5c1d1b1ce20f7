package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

const pathDeployments = "/api/v1/deployments"

// Deployment states as the hub reports them.
const (
	deployRolling  = "rolling"
	deployComplete = "complete"
	deployFailed   = "failed"
)

// maxSpecBytes bounds a spec file; the hub takes request bodies up to 1 MiB.
const maxSpecBytes = 1 << 20

// deploymentSummary is a deployment as GET /api/v1/deployments lists it and
// as POST /api/v1/deployments answers.
type deploymentSummary struct {
	Name      string   `json:"name"`
	Artifact  jsonText `json:"artifact"`
	Revision  jsonText `json:"revision"`
	State     string   `json:"state"`
	Message   string   `json:"message"`
	Devices   int      `json:"devices"` // assigned devices
	Updated   int      `json:"updated"` // devices on the revision and healthy
	CreatedAt flexTime `json:"created_at"`
	UpdatedAt flexTime `json:"updated_at"`
}

// deploymentStatus is GET /api/v1/deployments/{name}: the summary's fields
// with the assigned devices listed instead of counted.
type deploymentStatus struct {
	Name      string             `json:"name"`
	Artifact  jsonText           `json:"artifact"`
	Revision  jsonText           `json:"revision"`
	State     string             `json:"state"`
	Message   string             `json:"message"`
	Updated   int                `json:"updated"`
	CreatedAt flexTime           `json:"created_at"`
	UpdatedAt flexTime           `json:"updated_at"`
	Devices   []deploymentDevice `json:"devices"`
}

// deploymentDevice is one assigned device's report of a deployment's service.
type deploymentDevice struct {
	Device   string    `json:"device"`
	Online   bool      `json:"online"`
	Revision jsonText  `json:"revision"`
	Version  string    `json:"version"`
	State    string    `json:"state"`
	Healthy  bool      `json:"healthy"`
	Restarts int       `json:"restarts"`
	LastExit *exitJSON `json:"last_exit"`
	Limits   jsonText  `json:"limits"`
	Error    string    `json:"error"`
}

// exitJSON is how a service's process last ended (protocol.WorkloadExit).
type exitJSON struct {
	Code   int      `json:"code"`
	Signal jsonText `json:"signal"`
	Reason string   `json:"reason"`
	Error  string   `json:"error"`
	Time   int64    `json:"time"` // Unix milliseconds
}

// applyResponse is the answer to POST /api/v1/deployments.
type applyResponse struct {
	Result     string            `json:"result"` // created, updated or unchanged
	Deployment deploymentSummary `json:"deployment"`
}

// specError is the hub's refusal of a deployment spec, with every problem.
type specError struct {
	Message  string
	Problems []string
}

func (e *specError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(oneLine(p, 500))
	}
	return b.String()
}

// jsonText is a JSON value shown as text: a string as is, a number as
// written, an object as sorted key=value pairs, null as empty. It lets the
// CLI show fields whose exact type the hub may still change.
type jsonText string

func (t *jsonText) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*t = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = jsonText(s)
	case b[0] == '{':
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		keys := make([]string, 0, len(m))
		for k, v := range m {
			if v != nil && v != "" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + fmt.Sprint(m[k])
		}
		*t = jsonText(strings.Join(parts, ","))
	default:
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return err
		}
		*t = jsonText(buf.String())
	}
	return nil
}

// flexTime is a time the hub sends either as an RFC 3339 string or as Unix
// milliseconds.
type flexTime struct{ time.Time }

func (t *flexTime) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "null" || s == `""` || s == "0":
		t.Time = time.Time{}
		return nil
	case strings.HasPrefix(s, `"`):
		return t.Time.UnmarshalJSON(b)
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("time %s: want an RFC 3339 string or Unix milliseconds", s)
	}
	t.Time = time.UnixMilli(ms).UTC()
	return nil
}

// shortRevision cuts a long revision hash for people.
func shortRevision(r jsonText) string {
	s := string(r)
	if len(s) > 12 {
		return s[:8] + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

func deploymentPath(name string) string {
	return pathDeployments + "/" + url.PathEscape(name)
}

func newDeployCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "deploy",
		Aliases: []string{"deployments", "deployment"},
		Short:   "Run services on devices from a deployment spec, and roll changes out",
		Long: `deploy manages service deployments: a spec (YAML or JSON, see docs/deploy-spec.md)
names a published artifact of type service, how to run and health-check it, a label
selector and a rollout strategy. The hub runs the service on every device the selector
matches and rolls a changed spec out in batches, stopping and going back to the last
good revision when a batch does not become healthy. Changing a device's labels
("outpost devices label") moves the service on or off that device.`,
		Example: `  outpost deploy apply -f web.yaml --wait
  outpost deploy ls
  outpost deploy status web
  outpost logs web-1 web --follow
  outpost deploy rm web`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newDeployApplyCmd(g), newDeployListCmd(g), newDeployStatusCmd(g), newDeployRemoveCmd(g))
	return cmd
}

func newDeployApplyCmd(g *globals) *cobra.Command {
	var (
		file     string
		wait     bool
		timeout  time.Duration
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or change a deployment from a spec file",
		Long: `apply sends a deployment spec (YAML or JSON) to the hub, which creates the deployment,
updates it to a new revision, or leaves it unchanged when the spec is the same. A
created or updated deployment rolls out in the background; --wait follows it,
printing progress as it changes, and exits 0 once every device runs the new revision
healthily, or non-zero with the hub's reason when the rollout fails or --timeout
passes. A spec the hub refuses is reported with every problem, one per line.`,
		Example: `  outpost deploy apply -f web.yaml
  outpost deploy apply -f web.yaml --wait --timeout 5m
  render-spec | outpost deploy apply -f -
  outpost deploy apply -f web.json -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New(`-f is required: the spec file, or "-" for stdin`)
			}
			if wait && timeout <= 0 {
				return fmt.Errorf("--timeout %s: must be positive", timeout)
			}
			if wait && interval < 100*time.Millisecond {
				return fmt.Errorf("--interval %s: at least 100ms", interval)
			}
			spec, err := readSpec(cmd, file)
			if err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			raw, err := c.postSpec(ctx, spec)
			if err != nil {
				// A *specError lists every problem, one per line.
				return fmt.Errorf("applying %s: %w", specName(file), err)
			}
			var r applyResponse
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("decoding response of POST %s: %w", pathDeployments, err)
			}
			if g.jsonOutput() {
				if err := writeJSON(g.stdout, raw); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(g.stdout, describeApply(&r))
			}
			if !wait {
				return nil
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return g.waitDeployment(ctx, c, r.Deployment.Name, timeout, interval)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", `spec file, YAML or JSON; "-" reads stdin`)
	f.BoolVar(&wait, "wait", false, "wait until the rollout completes (exit 0) or fails (non-zero)")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait: give up (non-zero exit) after this long")
	f.DurationVar(&interval, "interval", time.Second, "with --wait: how often to ask the hub")
	return cmd
}

// readSpec reads the spec file, or stdin for "-".
func readSpec(cmd *cobra.Command, file string) ([]byte, error) {
	var r io.Reader
	if file == "-" {
		r = cmd.InOrStdin()
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("reading spec: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading spec %s: %w", specName(file), err)
	}
	if len(data) > maxSpecBytes {
		return nil, fmt.Errorf("reading spec %s: larger than %d bytes", specName(file), maxSpecBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("spec %s is empty", specName(file))
	}
	return data, nil
}

func specName(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}

// postSpec sends a spec as it is (not JSON-encoded) to POST
// /api/v1/deployments and returns the body of a 2xx answer. A refusal
// with a list of problems becomes *specError, other refusals *apiError.
func (c *client) postSpec(ctx context.Context, spec []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+pathDeployments, bytes.NewReader(spec))
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	ct := "application/yaml"
	if t := bytes.TrimSpace(spec); len(t) > 0 && t[0] == '{' {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "outpost/"+Version)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("POST %s: %w", pathDeployments, ctxErr)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach hub at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
		if err != nil {
			return nil, fmt.Errorf("reading response from hub at %s: %w", c.base, err)
		}
		return data, nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var refusal struct {
		Error    json.RawMessage `json:"error"`
		Problems []string        `json:"problems"`
	}
	decoded := json.Unmarshal(data, &refusal) == nil
	// The error is the documented {"code", "message"} object, or a
	// plain string.
	var msg string
	if decoded && json.Unmarshal(refusal.Error, &msg) != nil {
		var obj struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(refusal.Error, &obj) == nil {
			msg = obj.Message
		}
	}
	if resp.StatusCode == http.StatusBadRequest && decoded && len(refusal.Problems) > 0 {
		if msg == "" {
			msg = "invalid deployment spec"
		}
		return nil, &specError{Message: oneLine(msg, 200), Problems: refusal.Problems}
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	e := decodeError(resp).(*apiError)
	if e.Code == "" && msg != "" {
		e.Message = oneLine(msg, 500)
	}
	return nil, e
}

// describeApply is the one-line outcome of an apply, e.g. "deployment web
// created: revision 1a2b3c4d…, rolling out to 3 devices".
func describeApply(r *applyResponse) string {
	d := &r.Deployment
	return fmt.Sprintf("deployment %s %s: revision %s, %s", sanitize(d.Name), sanitize(r.Result),
		sanitize(shortRevision(d.Revision)), describeState(d.State, d.Message, d.Updated, d.Devices))
}

// describeState says where a rollout stands.
func describeState(state, message string, updated, devices int) string {
	var s string
	switch state {
	case deployRolling:
		s = fmt.Sprintf("rolling out (%s)", progress(updated, devices))
	case deployComplete:
		s = fmt.Sprintf("complete (%s)", progress(updated, devices))
	case deployFailed:
		s = "failed"
	default:
		s = state
	}
	if message != "" && state != deployComplete {
		s += ": " + message
	}
	return sanitize(s)
}

func progress(updated, devices int) string {
	noun := "devices"
	if devices == 1 {
		noun = "device"
	}
	return fmt.Sprintf("%d/%d %s updated and healthy", updated, devices, noun)
}

// waitDeployment polls a deployment's status every interval until it is
// complete (nil), failed (an error with the hub's message) or ctx ends (an
// error saying how far it got). It prints a progress line whenever the
// progress or the state changes. Refusals that will not go away by
// themselves end the wait; an unreachable hub or a 5xx is reported on
// stderr and polling goes on.
func (g *globals) waitDeployment(ctx context.Context, c *client, name string, timeout, interval time.Duration) error {
	var (
		lastLine, lastError string
		st                  deploymentStatus
		seen                bool
	)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		err := func() error {
			_, err := c.doJSON(ctx, http.MethodGet, deploymentPath(name), nil, nil, &st)
			return err
		}()
		var ae *apiError
		switch {
		case ctx.Err() != nil:
		case errors.As(err, &ae) && ae.Status < 500:
			return fmt.Errorf("waiting for deployment %s: %w", name, err)
		case err != nil:
			if msg := err.Error(); msg != lastError {
				fmt.Fprintf(g.stderr, "outpost: waiting for deployment %s: %v (retrying every %s)\n", name, err, interval)
				lastError = msg
			}
		default:
			lastError, seen = "", true
			line := fmt.Sprintf("%s: %s", st.State, progress(st.Updated, len(st.Devices)))
			if line != lastLine {
				lastLine = line
				if !g.jsonOutput() {
					fmt.Fprintf(g.stdout, "%s  %s\n", g.now().Format(time.TimeOnly), sanitize(line))
				}
			}
			switch st.State {
			case deployComplete:
				if !g.jsonOutput() {
					fmt.Fprintf(g.stdout, "deployment %s complete: revision %s on %s\n", sanitize(name),
						sanitize(shortRevision(st.Revision)), progress(st.Updated, len(st.Devices)))
				}
				return nil
			case deployFailed:
				msg := st.Message
				if msg == "" {
					msg = "the hub gave no reason"
				}
				return fmt.Errorf("deployment %s failed: %s", name, oneLine(msg, 2000))
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				where := "the hub did not answer"
				if seen {
					where = fmt.Sprintf("still %s, %s", st.State, progress(st.Updated, len(st.Devices)))
				}
				return fmt.Errorf("deployment %s did not complete within %s: %s", name, timeout, where)
			}
			return fmt.Errorf("waiting for deployment %s: %w", name, ctx.Err())
		case <-ticker.C:
		}
	}
}

func newDeployListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List deployments",
		Long: `ls lists the deployments by name: the artifact, the current revision, the rollout state,
how many of the assigned devices run that revision healthily, and the age.`,
		Example: `  outpost deploy ls
  outpost deploy ls -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var resp struct {
				Deployments []deploymentSummary `json:"deployments"`
			}
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, pathDeployments, nil, nil, &resp)
			if err != nil {
				return fmt.Errorf("listing deployments: %w", err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			now := g.now()
			rows := make([][]string, 0, len(resp.Deployments))
			for _, d := range resp.Deployments {
				rows = append(rows, []string{d.Name, orDash(string(d.Artifact)), shortRevision(d.Revision), orDash(d.State),
					fmt.Sprintf("%d/%d", d.Updated, d.Devices), age(d.CreatedAt.Time, now)})
			}
			return writeTable(g.stdout, []string{"NAME", "ARTIFACT", "REVISION", "STATE", "UPDATED/DEVICES", "AGE"}, rows)
		},
	}
}

func newDeployStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "status NAME",
		Aliases: []string{"show"},
		Short:   "Show a deployment and how its service runs on each device",
		Long: `status shows a deployment's revision and rollout state, then one line per assigned
device: whether it is online, the revision and version it reports, the service's state,
health and restarts, how its process last ended, and the limits in force; then the
errors the devices report. -o json prints the hub's answer, with the spec.`,
		Example: `  outpost deploy status web
  outpost deploy status web -o json | jq '.devices[] | select(.healthy | not)'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var st deploymentStatus
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, deploymentPath(args[0]), nil, nil, &st)
			if err != nil {
				return fmt.Errorf("showing deployment %q: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			return g.printDeployment(&st)
		},
	}
}

// printDeployment prints a deployment's status for people.
func (g *globals) printDeployment(st *deploymentStatus) error {
	now := g.now()
	withAge := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(time.RFC3339) + " (" + relativeTime(t, now) + ")"
	}
	fields := [][2]string{
		{"Deployment", st.Name},
		{"Artifact", orDash(string(st.Artifact))},
		{"Revision", orDash(string(st.Revision))},
		{"State", orDash(st.State)},
	}
	if st.Message != "" {
		fields = append(fields, [2]string{"Message", oneLine(st.Message, 2000)})
	}
	fields = append(fields,
		[2]string{"Devices", progress(st.Updated, len(st.Devices))},
		[2]string{"Created", withAge(st.CreatedAt.Time)},
		[2]string{"Changed", withAge(st.UpdatedAt.Time)},
	)
	if err := writeFields(g.stdout, fields); err != nil {
		return err
	}
	if len(st.Devices) == 0 {
		_, err := fmt.Fprintln(g.stdout, "\nNo device matches the selector.")
		return err
	}
	fmt.Fprintln(g.stdout)
	rows := make([][]string, 0, len(st.Devices))
	var errs [][2]string
	for _, d := range st.Devices {
		rows = append(rows, []string{d.Device, yesNo(d.Online), shortRevision(d.Revision), orDash(d.Version), orDash(d.State),
			yesNo(d.Healthy), fmt.Sprint(d.Restarts), describeExit(d.LastExit, now), orDash(string(d.Limits))})
		if d.Error != "" {
			errs = append(errs, [2]string{d.Device, d.Error})
		}
		if d.LastExit != nil && d.LastExit.Error != "" {
			errs = append(errs, [2]string{d.Device, "last exit: " + d.LastExit.Error})
		}
	}
	if err := writeTable(g.stdout, []string{"DEVICE", "ONLINE", "REVISION", "VERSION", "STATE", "HEALTHY", "RESTARTS", "LAST-EXIT", "LIMITS"}, rows); err != nil {
		return err
	}
	if len(errs) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("\nErrors:\n")
	for _, e := range errs {
		fmt.Fprintf(&b, "  %s: %s\n", sanitize(e[0]), oneLine(e[1], 2000))
	}
	_, err := io.WriteString(g.stdout, b.String())
	return err
}

// describeExit renders how a process last ended, e.g. "oom_killed (code
// 137) 5m ago"; "-" if it never did.
func describeExit(e *exitJSON, now time.Time) string {
	if e == nil {
		return "-"
	}
	var parts []string
	if e.Reason != "" {
		parts = append(parts, e.Reason)
	}
	if e.Signal != "" {
		parts = append(parts, "(signal "+string(e.Signal)+")")
	} else {
		parts = append(parts, fmt.Sprintf("(code %d)", e.Code))
	}
	if e.Time != 0 {
		parts = append(parts, relativeTime(time.UnixMilli(e.Time), now))
	}
	return strings.Join(parts, " ")
}

func newDeployRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Remove a deployment and stop its service on every device",
		Long: `rm deletes a deployment; the hub tells every assigned device to stop and remove the
service. It does not ask for confirmation.`,
		Example: `  outpost deploy rm web
  outpost deploy rm web -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var resp struct {
				Removed string `json:"removed"`
				Devices int    `json:"devices"`
			}
			raw, err := c.doJSON(cmd.Context(), http.MethodDelete, deploymentPath(args[0]), nil, nil, &resp)
			if err != nil {
				return fmt.Errorf("removing deployment %q: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			name := resp.Removed
			if name == "" {
				name = args[0]
			}
			noun := "devices"
			if resp.Devices == 1 {
				noun = "device"
			}
			_, err = fmt.Fprintf(g.stdout, "deployment %s removed; its service stops on %d %s\n", sanitize(name), resp.Devices, noun)
			return err
		},
	}
}

// age renders how long ago t was, for AGE columns: "5m", "2h", "4d".
func age(t, now time.Time) string {
	s := relativeTime(t, now)
	if s == "just now" {
		return "0s"
	}
	return strings.TrimSuffix(s, " ago")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
