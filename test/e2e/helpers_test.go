package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-edge/outpost/internal/promscrape"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// freeAddr returns a loopback address whose port nothing listens on right
// now. Tests that restart a hub pick their ports up front with it, so that
// the agent's configuration stays valid across restarts.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startHubAt starts `outpost hub` on the data directory and the fixed HTTP
// and MQTT addresses and waits for its address line. With login it also logs
// the CLI in (the first start of a data directory); a restart reuses the
// CLI environment of the hub it replaces, since the hub keeps its JWT key
// in the data directory.
func startHubAt(t *testing.T, data, httpAddr, mqttAddr string, env []string) *hubProc {
	t.Helper()
	p := start(t, nil, bin.outpost, "hub", "--data", data, "--http", httpAddr, "--mqtt", mqttAddr, "--grpc", "127.0.0.1:0")
	h := &hubProc{proc: p, data: data, env: env}
	testutil.Eventually(t, 30*time.Second, func() error {
		m := hubLine.FindStringSubmatch(p.output())
		if m == nil {
			select {
			case err := <-p.done:
				p.done <- err
				t.Fatalf("hub exited early (%v):\n%s", err, p.output())
			default:
			}
			return errors.New("hub has not printed its addresses yet")
		}
		h.url, h.mqtt = m[1], m[2]
		return nil
	})
	if env != nil {
		return h
	}
	h.env = []string{"OUTPOST_CONFIG_DIR=" + t.TempDir(), "OUTPOST_HUB=", "OUTPOST_TOKEN="}
	pw, err := os.ReadFile(filepath.Join(data, "admin-password"))
	if err != nil {
		t.Fatalf("generated admin password: %v", err)
	}
	run(t, h.env, string(pw), true, bin.outpost, "login", "--hub", h.url, "--user", "admin", "--password-stdin")
	return h
}

// fixedHub is a hub that is killed and restarted on the same data directory
// and the same ports.
type fixedHub struct {
	*hubProc
	httpAddr, mqttAddr string
	down               bool
	kills              int
}

func newFixedHub(t *testing.T) *fixedHub {
	t.Helper()
	f := &fixedHub{httpAddr: freeAddr(t), mqttAddr: freeAddr(t)}
	f.hubProc = startHubAt(t, filepath.Join(t.TempDir(), "hub-data"), f.httpAddr, f.mqttAddr, nil)
	return f
}

// kill sends SIGKILL to the hub and waits for it to be gone.
func (f *fixedHub) kill(t *testing.T) {
	t.Helper()
	if f.down {
		return
	}
	kill(t, f.proc)
	f.down = true
	f.kills++
}

// restart starts the hub again on the same data directory and ports.
func (f *fixedHub) restart(t *testing.T) {
	t.Helper()
	if !f.down {
		return
	}
	f.hubProc = startHubAt(t, f.data, f.httpAddr, f.mqttAddr, f.env)
	f.down = false
}

// kill sends SIGKILL to p and waits for it to exit; it fails the test if p
// had already exited on its own.
func kill(t *testing.T, p *proc) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		out := p.output()
		t.Fatalf("%s exited by itself before it was killed (%v); output:\n%s%s", filepath.Base(p.cmd.Path), err, tail(out, 8000), lockHolders(out))
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("killing %s: %v", p.cmd.Path, err)
	}
	err := <-p.done
	p.done <- err
}

var lockErr = regexp.MustCompile(`locking (/\S+): resource temporarily unavailable`)

// lockHolders explains an agent's "data directory locked" error: it lists
// the processes that have the lock file open.
func lockHolders(agentOutput string) string {
	m := lockErr.FindStringSubmatch(agentOutput)
	if m == nil {
		return ""
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nprocesses with %s open now:", m[1])
	procs, _ := os.ReadDir("/proc")
	for _, pe := range procs {
		fds, _ := os.ReadDir(filepath.Join("/proc", pe.Name(), "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join("/proc", pe.Name(), "fd", fd.Name())); l == m[1] {
				cmd, _ := os.ReadFile(filepath.Join("/proc", pe.Name(), "cmdline"))
				stat, _ := os.ReadFile(filepath.Join("/proc", pe.Name(), "stat"))
				fmt.Fprintf(&out, "\n  pid %s fd %s: %q; stat %s", pe.Name(), fd.Name(), strings.ReplaceAll(string(cmd), "\x00", " "), strings.TrimSpace(string(stat)))
			}
		}
	}
	return out.String()
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// startUnlogged starts a binary like start but does not print its output
// when the test fails: the kill loop starts hundreds of agents and reports
// the output of the one that misbehaved itself.
func startUnlogged(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-p.done:
			p.done <- err
		default:
			_ = p.cmd.Process.Kill()
			err := <-p.done
			p.done <- err
		}
	})
	return p
}

// agentDir is the data directory of a joined agent.
type agentDir struct {
	id, dir string
	// metricsAddr is the agent's http.listen address.
	metricsAddr string
}

// joinAgent adds device id to the hub, joins it into a fresh data
// directory and merges overrides into the agent.yaml that join wrote
// (maps are merged key by key, other values replace). It always sets
// http.listen to a free loopback port. labels (KEY=VALUE) are the
// device's labels.
func (h *hubProc) joinAgent(t *testing.T, id string, overrides map[string]any, labels ...string) *agentDir {
	t.Helper()
	token, _ := h.addDevice(t, id, labels...)
	a := &agentDir{id: id, dir: filepath.Join(t.TempDir(), id), metricsAddr: freeAddr(t)}
	run(t, nil, "", true, bin.agent, "join", "--hub", h.url, "--token", token, "--data", a.dir)
	a.edit(t, map[string]any{"http": map[string]any{"listen": a.metricsAddr}})
	a.edit(t, overrides)
	return a
}

// edit merges overrides into the agent's agent.yaml.
func (a *agentDir) edit(t *testing.T, overrides map[string]any) {
	t.Helper()
	path := filepath.Join(a.dir, "agent.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	mergeYAML(doc, overrides)
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mergeYAML(dst, src map[string]any) {
	for k, v := range src {
		sv, okS := v.(map[string]any)
		dv, okD := dst[k].(map[string]any)
		if okS && okD {
			mergeYAML(dv, sv)
			continue
		}
		dst[k] = v
	}
}

// start runs the agent on its data directory and waits until its /metrics
// answers.
func (a *agentDir) start(t *testing.T, env ...string) *proc {
	t.Helper()
	p := start(t, env, bin.agent, "run", "--data", a.dir)
	var exited error
	testutil.Eventually(t, 30*time.Second, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			exited = fmt.Errorf("agent exited (%v)", err)
			return nil
		default:
		}
		_, err := a.metrics()
		return err
	})
	if exited != nil {
		out := p.output()
		t.Fatalf("%v:\n%s%s", exited, out, lockHolders(out))
	}
	return p
}

// metrics scrapes the agent's /metrics into name → value; labelled series
// keep their labels in the name.
func (a *agentDir) metrics() (map[string]float64, error) {
	return scrape("http://" + a.metricsAddr + "/metrics")
}

func scrape(url string) (map[string]float64, error) {
	return promscrape.Get(context.Background(), url)
}

// metric returns one metric of m, failing if the agent does not expose it.
func metric(m map[string]float64, name string) (float64, error) {
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("agent exposes no metric %s (has %s)", name, strings.Join(slices.Sorted(maps.Keys(m)), ", "))
	}
	return v, nil
}

// storedPoint is one point as `outpost telemetry query -o json` prints it.
type storedPoint struct {
	Seq    uint64    `json:"seq"`
	Sensor string    `json:"sensor"`
	TS     time.Time `json:"ts"`
	Value  any       `json:"value"`
}

// allPoints reads every point the hub stored for device id in the last
// hour through the CLI, 10,000 (the hub's largest page) at a time. Pages
// are cut by timestamp: the next page starts at the last timestamp of the
// previous one, and the points of that millisecond already read are
// skipped. Any other point read twice is returned twice.
func (h *hubProc) allPoints(t *testing.T, id string) []storedPoint {
	t.Helper()
	const page = 10000
	var all []storedPoint
	since := "1h"
	var boundary map[uint64]bool // seqs read at the last timestamp of the previous page
	for {
		out := h.cli(t, "telemetry", "query", id, "--since", since, "--limit", strconv.Itoa(page), "-o", "json")
		var resp struct{ Points []storedPoint }
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("telemetry query output %q: %v", tail(out, 2000), err)
		}
		for _, p := range resp.Points {
			if boundary[p.Seq] && p.TS.Equal(resp.Points[0].TS) {
				delete(boundary, p.Seq)
				continue
			}
			all = append(all, p)
		}
		if len(resp.Points) < page {
			return all
		}
		last := resp.Points[len(resp.Points)-1].TS
		if last.Equal(resp.Points[0].TS) {
			t.Fatalf("more than %d points at %s: cannot page by time", page, last)
		}
		boundary = map[uint64]bool{}
		for _, p := range resp.Points {
			if p.TS.Equal(last) {
				boundary[p.Seq] = true
			}
		}
		since = last.UTC().Format(time.RFC3339Nano)
	}
}

// seqReport sums up a device's stored points by seq.
type seqReport struct {
	n          int    // points stored
	valued     int    // points of the sensor whose values were checked
	maxSeq     uint64 // largest seq stored
	minSeq     uint64
	duplicates []uint64 // seqs stored more than once
	gaps       []uint64 // seqs between minSeq and maxSeq not stored (at most 20 listed)
	gapCount   uint64
	disorder   []string // values not strictly increasing with seq (at most 20 listed)
	lastValue  float64
}

// checkSeqs sorts pts by seq and reports duplicates, gaps, and whether the
// values of sensor strictly increase with seq.
func checkSeqs(pts []storedPoint, sensor string) seqReport {
	pts = slices.Clone(pts)
	slices.SortFunc(pts, func(a, b storedPoint) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	r := seqReport{n: len(pts)}
	if len(pts) == 0 {
		return r
	}
	r.minSeq, r.maxSeq = pts[0].Seq, pts[len(pts)-1].Seq
	prev := math.Inf(-1)
	for i, p := range pts {
		if i > 0 {
			switch d := p.Seq - pts[i-1].Seq; {
			case d == 0:
				r.duplicates = append(r.duplicates, p.Seq)
			case d > 1:
				r.gapCount += d - 1
				if len(r.gaps) < 20 {
					r.gaps = append(r.gaps, pts[i-1].Seq+1)
				}
			}
		}
		if p.Sensor != sensor {
			continue
		}
		r.valued++
		v, ok := p.Value.(float64)
		if !ok {
			if len(r.disorder) < 20 {
				r.disorder = append(r.disorder, fmt.Sprintf("seq %d: value %v is not a number", p.Seq, p.Value))
			}
			continue
		}
		if v <= prev && len(r.disorder) < 20 {
			r.disorder = append(r.disorder, fmt.Sprintf("seq %d: value %v after %v", p.Seq, v, prev))
		}
		prev, r.lastValue = v, v
	}
	return r
}

// counterSource is an exec source whose command increments a counter file
// under a lock and prints the new value, so the values it produces are a
// known, strictly increasing sequence however often the agent (and with it
// a command in flight) is killed. While the file "stop" exists the command
// fails instead, so that the sequence can be ended before checking it; a
// failing run leaves a marker "stopped-NAME", which tells that every
// earlier read of that source is committed (the agent reads a source and
// appends its points to the spool before it reads it again).
type counterSource struct {
	dir string
	// names are the sources configured with config and loadConfig.
	names []string
}

func newCounterSource(t *testing.T) *counterSource {
	t.Helper()
	needTool(t, "sh", "dash")
	needTool(t, "flock", "util-linux")
	needTool(t, "mv", "coreutils")
	return &counterSource{dir: t.TempDir()}
}

// config is the sources entry of agent.yaml for the counter.
func (c *counterSource) config(name string, interval time.Duration) map[string]any {
	c.names = append(c.names, name)
	script := fmt.Sprintf(`d='%s'
[ -e "$d/stop" ] && { : >"$d/stopped-%s"; echo stopped >&2; exit 3; }
exec 9>>"$d/lock"
flock 9
n=0
[ -e "$d/counter" ] && read n < "$d/counter"
n=$((n+1))
echo "$n" > "$d/counter.tmp"
mv "$d/counter.tmp" "$d/counter"
echo "$n"`, c.dir, name)
	return map[string]any{
		"name": name, "type": "exec", "interval": interval.String(),
		"exec": map[string]any{"command": []string{"sh", "-c", script}, "format": "number"},
	}
}

// loadConfig is the sources entry of agent.yaml for a source that adds
// volume: every read prints points JSON lines (sensors name/v0, name/v1,
// …), and fails like the counter once the counter is stopped.
func (c *counterSource) loadConfig(name string, interval time.Duration, points int) map[string]any {
	c.names = append(c.names, name)
	var lines strings.Builder
	for i := range points {
		fmt.Fprintf(&lines, "{\"sensor\":\"v%d\",\"value\":%d.5}\n", i, i)
	}
	script := fmt.Sprintf(`[ -e '%[1]s/stop' ] && { : >'%[1]s/stopped-%[2]s'; echo stopped >&2; exit 3; }
printf '%%s' '%[3]s'`, c.dir, name, lines.String())
	return map[string]any{
		"name": name, "type": "exec", "interval": interval.String(),
		"exec": map[string]any{"command": []string{"sh", "-c", script}, "format": "json_lines"},
	}
}

// stop makes every further run of the sources' commands fail, waits
// until each source has failed once (so every value read before is
// committed to the spool) and returns the last value the counter handed
// out. The agent must be running.
func (c *counterSource) stop(t *testing.T) uint64 {
	t.Helper()
	for _, n := range c.names {
		if err := os.Remove(filepath.Join(c.dir, "stopped-"+n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.dir, "stop"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, n := range c.names {
			if _, err := os.Stat(filepath.Join(c.dir, "stopped-"+n)); err != nil {
				return fmt.Errorf("source %s has not failed since the stop: %w", n, err)
			}
		}
		return nil
	})
	return c.value(t)
}

// value is the last value the counter handed out (0 before the first).
func (c *counterSource) value(t *testing.T) uint64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(c.dir, "counter"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		t.Fatalf("counter file: %v", err)
	}
	return n
}

// waitDrained waits until the agent's spool is empty: with its sources
// stopped (counterSource.stop), every point it committed has then been
// acknowledged by the broker, which the hub does only after storing it. It
// returns the agent's metrics at that moment.
func waitDrained(t *testing.T, a *agentDir, timeout time.Duration) map[string]float64 {
	t.Helper()
	var last map[string]float64
	testutil.Eventually(t, timeout, func() error {
		m, err := a.metrics()
		if err != nil {
			return err
		}
		depth, err := metric(m, "outpost_agent_spool_points")
		if err != nil {
			return err
		}
		if depth != 0 {
			return fmt.Errorf("agent spool still holds %v points", depth)
		}
		last = m
		return nil
	})
	return last
}

// resume lets the command count again after stop.
func (c *counterSource) resume(t *testing.T) {
	t.Helper()
	if err := os.Remove(filepath.Join(c.dir, "stop")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}
