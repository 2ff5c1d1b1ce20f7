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

	"github.com/outpost-edge/outpost/internal/rollout"
	"github.com/outpost-edge/outpost/protocol"
	"github.com/spf13/cobra"
)

// shadowDoc is a shadow document of GET/PATCH /api/v1/devices/{id}/shadow.
type shadowDoc struct {
	State struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
		Delta    map[string]any `json:"delta"`
	} `json:"state"`
	Metadata struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	} `json:"metadata"`
	Version   int64 `json:"version"`
	Timestamp int64 `json:"timestamp"`
}

// decodeShadow decodes a shadow document keeping numbers exact.
func decodeShadow(raw []byte) (*shadowDoc, error) {
	var d shadowDoc
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decoding shadow from hub: %w", err)
	}
	return &d, nil
}

func shadowPath(device, name string) (string, url.Values) {
	var q url.Values
	if name != "" {
		q = url.Values{"name": {name}}
	}
	return devicePath(device, "/shadow"), q
}

// shadowLabel names a shadow for messages: "pump-7" or "pump-7 (shadow config)".
func shadowLabel(device, name string) string {
	if name == "" {
		return device
	}
	return device + " (shadow " + name + ")"
}

func newShadowCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shadow",
		Short: "Read, change and watch device shadows (desired and reported configuration)",
		Long: `shadow works with device shadows, AWS IoT-style JSON documents that hold the
configuration an operator wants a device to run ("desired"), what the device reports it
runs ("reported"), and the difference ("delta") that the device still has to apply.
A device has a classic shadow and any number of named ones (--name). See docs/shadow.md.`,
		Example: `  outpost shadow get pump-7
  outpost shadow set pump-7 sources.temperature.interval=200ms log.level=debug
  outpost shadow watch pump-7`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newShadowGetCmd(g), newShadowSetCmd(g), newShadowWatchCmd(g))
	return cmd
}

func newShadowGetCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "get DEVICE",
		Short: "Show a device's shadow",
		Long: `get prints a device's shadow: one row per key with its desired and reported value
and whether the device has applied it ("in sync"), still has to ("pending"), or only
reports it. Values are shown as JSON. -o json prints the document as the hub sent it.`,
		Example: `  outpost shadow get pump-7
  outpost shadow get pump-7 --name config
  outpost shadow get pump-7 -o json | jq .state.delta`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			path, q := shadowPath(args[0], name)
			raw, err := c.do(cmd.Context(), http.MethodGet, path, q, nil)
			if err != nil {
				return fmt.Errorf("getting shadow of %s: %w", shadowLabel(args[0], name), err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			d, err := decodeShadow(raw)
			if err != nil {
				return err
			}
			return g.printShadow(fmt.Sprintf("Shadow of %s, version %d", shadowLabel(args[0], name), d.Version), d)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "named shadow (default: the classic shadow)")
	return cmd
}

func newShadowSetCmd(g *globals) *cobra.Command {
	var (
		name, file, ifMatch string
		selector            []string
		ro                  rolloutFlags
	)
	cmd := &cobra.Command{
		Use:   "set {DEVICE | --selector KEY=VALUE} [KEY=VALUE...]",
		Short: "Change the desired state of a device, or of a group of devices in batches",
		Long: `set merges values into a device's desired state; the device receives what differs
from what it reports (the delta) and applies it.

KEY is a dotted path: sources.temperature.interval=200ms sets
{"sources":{"temperature":{"interval":"200ms"}}}, leaving other keys alone. VALUE is
taken as JSON when it is valid JSON (numbers, true, false, null, "quoted strings",
arrays, objects) and as a plain string otherwise; null deletes the key. --file reads a
JSON object to merge (- for stdin); KEY=VALUE pairs apply on top of it.

--if-match VERSION applies the change only if the shadow is still at that version
(see "outpost shadow get"), so that two operators do not overwrite each other.

--selector LABEL=VALUE (instead of DEVICE; repeatable, all must match) rolls the change
out to every matching device in batches of --batch devices (a count, or a percentage
of the matching devices rounded up), in order of device id. It waits until every
device of a batch reports the new values (its delta for those keys is gone), pauses
--pause, and goes on with the next batch. A batch that has not converged within
--timeout stops the rollout: the command names the devices that did not report the
values and exits non-zero; later batches are left unchanged. It prints a line per
batch; -o json prints a summary at the end (and the per-batch lines on stderr).`,
		Example: `  outpost shadow set pump-7 sources.temperature.interval=200ms
  outpost shadow set pump-7 sources.vibration.enabled=false report.deadband=0.5 log.level=debug
  outpost shadow set pump-7 site.name='"42"'        # the string "42", not a number
  outpost shadow set pump-7 sources.vibration=null   # delete a key
  outpost shadow set pump-7 --file desired.json --if-match 12
  jq -n '{log: {level: "info"}}' | outpost shadow set pump-7 --file - --name config
  outpost shadow set --selector site=plant-1 log.level=debug --batch 10% --pause 30s --timeout 2m`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			group := cmd.Flags().Changed("selector")
			var sel map[string]string
			if group {
				var err error
				if sel, err = parseSelector(selector); err != nil {
					return err
				}
				if ifMatch != "" {
					return errors.New("--if-match works on one device; it cannot be combined with --selector")
				}
				if err := ro.validate(); err != nil {
					return err
				}
			} else {
				if len(args) == 0 {
					return errors.New("give a DEVICE, or --selector LABEL=VALUE for a group of devices")
				}
				if changed := ro.changedFlags(cmd); len(changed) > 0 {
					return fmt.Errorf("%s: only with --selector", strings.Join(changed, ", "))
				}
			}
			var version string
			if ifMatch != "" {
				v, err := strconv.ParseInt(ifMatch, 10, 64)
				if err != nil || v < 0 {
					return fmt.Errorf("--if-match %q: want a shadow version such as 12", ifMatch)
				}
				version = strconv.FormatInt(v, 10)
			}
			assignments := args
			if !group {
				assignments = args[1:]
			}
			if file == "" && len(assignments) == 0 {
				return errors.New("nothing to set: give KEY=VALUE pairs or --file")
			}
			var frag map[string]any
			if file != "" {
				var err error
				if frag, err = readDesiredFile(cmd.InOrStdin(), file); err != nil {
					return err
				}
			}
			frag, err := applyAssignments(frag, assignments)
			if err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			if group {
				return g.rollout(cmd.Context(), c, name, sel, frag, ro)
			}
			if version != "" {
				c = c.withHeader("If-Match", strconv.Quote(version))
			}
			path, q := shadowPath(args[0], name)
			raw, err := c.do(cmd.Context(), http.MethodPatch, path, q, frag)
			if err != nil {
				return fmt.Errorf("setting shadow of %s: %w", shadowLabel(args[0], name), err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			d, err := decodeShadow(raw)
			if err != nil {
				return err
			}
			headline := fmt.Sprintf("Updated the desired state of %s; shadow version %d", shadowLabel(args[0], name), d.Version)
			if len(d.State.Delta) > 0 {
				headline += " (pending until the device reports it)"
			}
			return g.printShadow(headline, d)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "named shadow (default: the classic shadow)")
	f.StringVarP(&file, "file", "f", "", "JSON object to merge into desired (- reads stdin)")
	f.StringVar(&ifMatch, "if-match", "", "apply only if the shadow is at this version")
	f.StringArrayVarP(&selector, "selector", "l", nil, "roll out to the devices with this LABEL=VALUE (repeatable, all must match)")
	ro.register(cmd)
	return cmd
}

// readDesiredFile reads a JSON object from path, or from stdin for "-".
func readDesiredFile(stdin io.Reader, path string) (map[string]any, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, protocol.MaxShadowRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("--file %s: %w", path, err)
	}
	if len(data) > protocol.MaxShadowRequestBytes {
		return nil, fmt.Errorf("--file %s: larger than the hub's limit of %d bytes", path, protocol.MaxShadowRequestBytes)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("--file %s: not JSON: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("--file %s: data after the JSON object", path)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf(`--file %s: want a JSON object such as {"log": {"level": "debug"}}`, path)
	}
	return m, nil
}

// applyAssignments merges KEY=VALUE arguments into frag (which may be
// nil) and returns it. Dotted keys build nested objects; a value is JSON if
// it parses as JSON, else a string.
func applyAssignments(frag map[string]any, args []string) (map[string]any, error) {
	if frag == nil {
		frag = map[string]any{}
	}
	var errs []error
	seen := map[string]bool{}
	for _, a := range args {
		key, raw, ok := strings.Cut(a, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%q: want KEY=VALUE, e.g. sources.temperature.interval=200ms", a))
			continue
		}
		path := strings.Split(key, ".")
		if slicesContainEmpty(path) {
			errs = append(errs, fmt.Errorf("%q: key %q has an empty part; use dots only between names", a, key))
			continue
		}
		if seen[key] {
			errs = append(errs, fmt.Errorf("%q: key %q given twice", a, key))
			continue
		}
		seen[key] = true
		if err := setPath(frag, path, parseValue(raw)); err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", a, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return frag, nil
}

func slicesContainEmpty(parts []string) bool {
	for _, p := range parts {
		if p == "" {
			return true
		}
	}
	return false
}

// parseValue returns raw as JSON if it is valid JSON, else as a string.
func parseValue(raw string) any {
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil {
		if _, err := dec.Token(); err == io.EOF {
			return v
		}
	}
	return raw
}

// setPath sets path in m to v, creating objects on the way.
func setPath(m map[string]any, path []string, v any) error {
	for i, p := range path[:len(path)-1] {
		next, exists := m[p]
		switch next := next.(type) {
		case map[string]any:
			m = next
		default:
			if exists {
				return fmt.Errorf("%s is already set to %s, not an object", strings.Join(path[:i+1], "."), compactJSON(next))
			}
			sub := map[string]any{}
			m[p] = sub
			m = sub
		}
	}
	m[path[len(path)-1]] = v
	return nil
}

// withHeader returns a copy of c that sends header k: v on every request.
func (c *client) withHeader(k, v string) *client {
	cc := *c
	hc := *c.http
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = headerTransport{base: base, key: k, value: v}
	cc.http = &hc
	return &cc
}

type headerTransport struct {
	base       http.RoundTripper
	key, value string
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(t.key, t.value)
	return t.base.RoundTrip(r)
}

func newShadowWatchCmd(g *globals) *cobra.Command {
	var (
		name     string
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "watch DEVICE",
		Short: "Print each new version of a device's shadow until interrupted",
		Long: `watch polls a device's shadow every --interval and prints each new version: its
desired, reported and delta state. It runs until interrupted (Ctrl-C) and keeps going
while the hub is unreachable. -o json prints one JSON document per line.`,
		Example: `  outpost shadow watch pump-7
  outpost shadow watch pump-7 --name config --interval 200ms
  outpost shadow watch pump-7 -o json | jq -c .state.delta`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval < 100*time.Millisecond {
				return fmt.Errorf("--interval %s: at least 100ms", interval)
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			return g.watchShadow(cmd.Context(), c, args[0], name, interval)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "named shadow (default: the classic shadow)")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often to ask the hub")
	return cmd
}

// watchShadow polls until ctx ends. Refusals that will not go away by
// themselves (bad request, authentication) end it with an error; others
// (hub unreachable, 5xx) are reported once and polling continues.
func (g *globals) watchShadow(ctx context.Context, c *client, device, name string, interval time.Duration) error {
	path, q := shadowPath(device, name)
	label := shadowLabel(device, name)
	var (
		last      int64 = -1 // version printed last; 0 while the shadow does not exist
		lastError string
	)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		raw, err := c.do(ctx, http.MethodGet, path, q, nil)
		var ae *apiError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Code == "not_found":
			if last != 0 {
				// With -o json stdout carries only documents.
				w := g.stdout
				if g.jsonOutput() {
					w = g.stderr
				}
				fmt.Fprintf(w, "%s  %s has no shadow (yet); waiting\n", g.now().Format(time.RFC3339), label)
				last = 0
			}
			lastError = ""
		case errors.As(err, &ae) && ae.Status < 500:
			return fmt.Errorf("watching shadow of %s: %w", label, err)
		case err != nil:
			if msg := err.Error(); msg != lastError {
				fmt.Fprintf(g.stderr, "outpost: watching shadow of %s: %v (retrying every %s)\n", label, err, interval)
				lastError = msg
			}
		default:
			lastError = ""
			d, err := decodeShadow(raw)
			if err != nil {
				return err
			}
			if d.Version != last {
				last = d.Version
				if err := g.printWatched(raw, d); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (g *globals) printWatched(raw []byte, d *shadowDoc) error {
	if g.jsonOutput() {
		var buf bytes.Buffer
		if err := json.Compact(&buf, bytes.TrimSpace(raw)); err != nil {
			return fmt.Errorf("formatting JSON from hub: %w", err)
		}
		buf.WriteByte('\n')
		_, err := g.stdout.Write(buf.Bytes())
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  version %d\n", g.now().Format(time.RFC3339), d.Version)
	for _, s := range []struct {
		label string
		m     map[string]any
	}{{"desired: ", d.State.Desired}, {"reported:", d.State.Reported}, {"delta:   ", d.State.Delta}} {
		v := "-"
		if len(s.m) > 0 {
			v = sanitize(compactJSON(s.m))
		}
		fmt.Fprintf(&b, "  %s %s\n", s.label, v)
	}
	_, err := io.WriteString(g.stdout, b.String())
	return err
}

// printShadow prints a headline and one row per leaf key of desired and
// reported.
func (g *globals) printShadow(headline string, d *shadowDoc) error {
	if last := latestTimestamp(d.Metadata.Desired, d.Metadata.Reported); last > 0 {
		headline += ", last changed " + relativeTime(time.Unix(last, 0), g.now())
	}
	if _, err := fmt.Fprintln(g.stdout, sanitize(headline)); err != nil {
		return err
	}
	desired, reported, delta := map[string]any{}, map[string]any{}, map[string]any{}
	flatten("", d.State.Desired, desired)
	flatten("", d.State.Reported, reported)
	flatten("", d.State.Delta, delta)
	if len(desired) == 0 && len(reported) == 0 {
		_, err := fmt.Fprintln(g.stdout, "No desired or reported state.")
		return err
	}
	keys := make([]string, 0, len(desired)+len(reported))
	for k := range desired {
		keys = append(keys, k)
	}
	for k := range reported {
		if _, dup := desired[k]; !dup {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	rows := make([][]string, 0, len(keys))
	for _, k := range keys {
		dv, hasD := desired[k]
		rv, hasR := reported[k]
		_, pending := delta[k]
		status := "in sync"
		switch {
		case pending:
			status = "pending"
		case !hasD:
			status = "reported only"
		}
		rows = append(rows, []string{k, cell(dv, hasD), cell(rv, hasR), status})
	}
	return writeTable(g.stdout, []string{"KEY", "DESIRED", "REPORTED", "STATUS"}, rows)
}

func cell(v any, ok bool) string {
	if !ok {
		return "-"
	}
	return compactJSON(v)
}

// flatten records the leaves of m (arrays are leaves) under dotted keys.
func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			flatten(key, sub, out)
			continue
		}
		out[key] = v
	}
}

// latestTimestamp returns the newest {"timestamp": s} leaf of the metadata.
func latestTimestamp(metas ...map[string]any) int64 {
	var latest int64
	var walk func(v any)
	walk = func(v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		if ts, ok := m["timestamp"].(json.Number); ok && len(m) == 1 {
			if n, err := ts.Int64(); err == nil && n > latest {
				latest = n
			}
			return
		}
		for _, c := range m {
			walk(c)
		}
	}
	for _, m := range metas {
		walk(m)
	}
	return latest
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// rolloutFlags are the flags of "shadow set --selector".
type rolloutFlags struct {
	batch                 string
	pause, timeout, every time.Duration
}

var rolloutFlagNames = []string{"batch", "pause", "timeout", "poll-interval"}

func (r *rolloutFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&r.batch, "batch", "10%", "with --selector: devices per batch, a count (5) or a percentage of the matching devices (10%)")
	f.DurationVar(&r.pause, "pause", 0, "with --selector: wait between a converged batch and the next")
	f.DurationVar(&r.timeout, "timeout", rollout.DefaultTimeout, "with --selector: stop if a batch has not converged within this time")
	f.DurationVar(&r.every, "poll-interval", rollout.DefaultPollInterval, "with --selector: how often to read the shadows of a batch")
}

// validate reports every bad rollout flag at once.
func (r *rolloutFlags) validate() error {
	var errs []error
	if _, err := rollout.ParseBatchSize(r.batch); err != nil {
		errs = append(errs, fmt.Errorf("--batch: %w", err))
	}
	if r.pause < 0 {
		errs = append(errs, fmt.Errorf("--pause %s: must not be negative", r.pause))
	}
	if r.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: must be positive", r.timeout))
	}
	if r.every < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--poll-interval %s: at least 10ms", r.every))
	}
	return errors.Join(errs...)
}

// changedFlags returns the rollout flags given on the command line.
func (r *rolloutFlags) changedFlags(cmd *cobra.Command) []string {
	var out []string
	for _, n := range rolloutFlagNames {
		if cmd.Flags().Changed(n) {
			out = append(out, "--"+n)
		}
	}
	return out
}

// parseSelector parses --selector LABEL=VALUE flags.
func parseSelector(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, errors.New("--selector: give at least one LABEL=VALUE")
	}
	m := make(map[string]string, len(flags))
	var errs []error
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case !ok || k == "":
			errs = append(errs, fmt.Errorf("--selector %q: want LABEL=VALUE, e.g. site=plant-1", f))
		case m[k] != "" && m[k] != v:
			errs = append(errs, fmt.Errorf("--selector %q: label %q given twice with different values", f, k))
		default:
			m[k] = v
		}
	}
	return m, errors.Join(errs...)
}

// formatSelector renders a selector as "k=v,k2=v2", sorted.
func formatSelector(sel map[string]string) string {
	parts := make([]string, 0, len(sel))
	for k, v := range sel {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// restRollout is rollout.API over the hub's REST API, for one shadow name.
type restRollout struct {
	c    *client
	name string
}

var _ rollout.API = restRollout{}

func (r restRollout) Devices(ctx context.Context, sel map[string]string) ([]string, error) {
	q := url.Values{}
	for k, v := range sel {
		q.Add("label", k+"="+v)
	}
	var resp struct {
		Devices []device `json:"devices"`
	}
	if _, err := r.c.doJSON(ctx, http.MethodGet, pathDevices, q, nil, &resp); err != nil {
		return nil, err
	}
	ids := make([]string, len(resp.Devices))
	for i, d := range resp.Devices {
		ids[i] = d.ID
	}
	return ids, nil
}

func (r restRollout) PatchDesired(ctx context.Context, id string, frag map[string]any) (map[string]any, error) {
	path, q := shadowPath(id, r.name)
	return r.reported(r.c.do(ctx, http.MethodPatch, path, q, frag))
}

func (r restRollout) Reported(ctx context.Context, id string) (map[string]any, error) {
	path, q := shadowPath(id, r.name)
	return r.reported(r.c.do(ctx, http.MethodGet, path, q, nil))
}

func (restRollout) reported(raw []byte, err error) (map[string]any, error) {
	if err != nil {
		return nil, err
	}
	d, err := decodeShadow(raw)
	if err != nil {
		return nil, err
	}
	return d.State.Reported, nil
}

// rollout runs "shadow set --selector": one progress line per batch (on
// stderr with -o json, whose stdout carries only the final summary).
func (g *globals) rollout(ctx context.Context, c *client, name string, sel map[string]string, frag map[string]any, f rolloutFlags) error {
	batch, err := rollout.ParseBatchSize(f.batch)
	if err != nil {
		return err
	}
	progress := g.stdout
	if g.jsonOutput() {
		progress = g.stderr
	}
	what := "devices matching " + formatSelector(sel)
	if name != "" {
		what += " (shadow " + name + ")"
	}
	r := &rollout.Rollout{
		API: restRollout{c: c, name: name}, Selector: sel, Desired: frag, Batch: batch,
		Pause: f.pause, Timeout: f.timeout, PollInterval: f.every,
		OnStart: func(batches [][]string) {
			n := 0
			for _, b := range batches {
				n += len(b)
			}
			fmt.Fprintln(progress, sanitize(fmt.Sprintf("Rolling out %s to %d %s in %d batch(es) of up to %d (pause %s, timeout %s).",
				compactJSON(frag), n, what, len(batches), len(batches[0]), f.pause, f.timeout)))
		},
		OnBatch: func(b rollout.BatchResult) {
			status := "converged"
			if len(b.Failed) > 0 {
				names := make([]string, len(b.Failed))
				for i, fl := range b.Failed {
					names[i] = fl.Device
				}
				status = "FAILED: " + strings.Join(names, ", ") + " did not converge"
			}
			fmt.Fprintln(progress, sanitize(fmt.Sprintf("batch %d/%d  %s  %s  %s",
				b.Index, b.Of, strings.Join(b.Devices, ", "), status, roundElapsed(b.Elapsed))))
		},
	}
	res, err := r.Run(ctx)
	switch {
	case errors.Is(err, rollout.ErrNoDevices):
		err = fmt.Errorf("no device matches --selector %s; nothing changed (see \"outpost devices ls --label ...\")", formatSelector(sel))
	case err != nil:
		err = fmt.Errorf("rolling out to %s: %w", what, err)
	}
	if g.jsonOutput() {
		if werr := writeJSONValue(g.stdout, res); werr != nil && err == nil {
			err = werr
		}
	} else if err == nil {
		fmt.Fprintf(progress, "Done: %d device(s) converged in %s.\n", len(res.Converged), roundElapsed(time.Duration(res.ElapsedMS)*time.Millisecond))
	}
	return err
}

// roundElapsed rounds d for display: milliseconds below a second, tenths
// of a second above.
func roundElapsed(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
