package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/outpost-edge/outpost/internal/promscrape"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// env is a scratch directory with freshly built binaries and, once
// startHub ran, a hub and a logged-in CLI.
type env struct {
	dir            string
	outpost, agent string
	cliEnv         []string

	hub      *daemon
	hubURL   string
	mqttAddr string
	hubData  string

	mu      sync.Mutex
	daemons []*daemon
}

// newEnv builds outpost and outpost-agent as a release would (static,
// stripped) into a scratch directory.
// newEnvWithHub is newEnv with the hub already started; on failure
// nothing is left running.
func newEnvWithHub(ctx context.Context) (*env, error) {
	e, err := newEnv(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.startHub(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func newEnv(ctx context.Context) (*env, error) {
	dir, err := os.MkdirTemp("", "outpost-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, outpost: filepath.Join(dir, "outpost"), agent: filepath.Join(dir, "outpost-agent")}
	for out, pkg := range map[string]string{e.outpost: "./cmd/outpost", e.agent: "./cmd/outpost-agent"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("building %s: %w\n%s", pkg, err, b)
		}
	}
	return e, nil
}

// close stops every daemon (SIGTERM, then SIGKILL after 10s) and removes
// the scratch directory.
func (e *env) close() {
	e.mu.Lock()
	ds := e.daemons
	e.mu.Unlock()
	for i := len(ds) - 1; i >= 0; i-- {
		ds[i].stop()
	}
	os.RemoveAll(e.dir)
}

// daemon is a background process whose output goes to a log file.
type daemon struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (e *env) spawn(name string, logName string, args ...string) (*daemon, error) {
	log := filepath.Join(e.dir, logName)
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	d := &daemon{cmd: exec.Command(name, args...), log: log, done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = f, f
	if err := d.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() {
		d.err = d.cmd.Wait()
		f.Close()
		close(d.done)
	}()
	e.mu.Lock()
	e.daemons = append(e.daemons, d)
	e.mu.Unlock()
	return d, nil
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *daemon) output() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

func (d *daemon) stop() {
	if d.exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

var hubLine = regexp.MustCompile(`Outpost hub: API (http://\S+), MQTT mqtt://(\S+),`)

// startHub starts `outpost hub` on loopback ports chosen by the kernel and
// logs the CLI in.
func (e *env) startHub(ctx context.Context) error {
	return e.startHubAt(ctx, "127.0.0.1:0", "127.0.0.1:0")
}

// startHubAt starts `outpost hub` on the given addresses and, the first
// time, logs the CLI in; later calls restart it on the same data.
func (e *env) startHubAt(ctx context.Context, httpAddr, mqttAddr string) error {
	e.hubData = filepath.Join(e.dir, "hub-data")
	d, err := e.spawn(e.outpost, fmt.Sprintf("hub-%d.log", len(e.daemons)), "hub", "--data", e.hubData, "--http", httpAddr, "--mqtt", mqttAddr, "--grpc", "127.0.0.1:0")
	if err != nil {
		return err
	}
	e.hub = d
	err = poll(ctx, 30*time.Second, 10*time.Millisecond, func() error {
		if d.exited() {
			return fmt.Errorf("hub exited: %v\n%s", d.err, d.output())
		}
		m := hubLine.FindStringSubmatch(d.output())
		if m == nil {
			return errors.New("hub has not printed its addresses")
		}
		e.hubURL, e.mqttAddr = m[1], m[2]
		return nil
	})
	if err != nil {
		return err
	}
	if e.cliEnv != nil {
		return nil
	}
	e.cliEnv = []string{"OUTPOST_CONFIG_DIR=" + filepath.Join(e.dir, "cli"), "OUTPOST_HUB=", "OUTPOST_TOKEN="}
	pw, err := os.ReadFile(filepath.Join(e.hubData, "admin-password"))
	if err != nil {
		return err
	}
	_, err = e.cli(ctx, string(pw), "login", "--hub", e.hubURL, "--user", "admin", "--password-stdin")
	return err
}

// cli runs `outpost args...` and returns its stdout.
func (e *env) cli(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.outpost, args...)
	cmd.Env = append(os.Environ(), e.cliEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("outpost %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// addDevice registers a device and returns its join token.
func (e *env) addDevice(ctx context.Context, id string) (string, error) {
	out, err := e.cli(ctx, "", "devices", "add", id, "-o", "json")
	if err != nil {
		return "", err
	}
	var resp struct {
		JoinToken string `json:"join_token"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return "", fmt.Errorf("devices add output %q: %w", out, err)
	}
	return resp.JoinToken, nil
}

// joinHTTP redeems a join token as a third-party device would and returns
// the MQTT password.
func (e *env) joinHTTP(ctx context.Context, token string) (string, error) {
	body, _ := json.Marshal(map[string]string{"token": token})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.hubURL+"/api/v1/join", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var cred struct {
		MQTTPassword string `json:"mqtt_password"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cred); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("join: status %d, %v", resp.StatusCode, err)
	}
	return cred.MQTTPassword, nil
}

// agentDir is a joined agent's data directory.
type agentDir struct {
	id, dir     string
	metricsAddr string
}

// joinAgent registers device id, runs `outpost-agent join` and merges
// overrides into its agent.yaml (maps key by key); http.listen is set to a
// free loopback port.
func (e *env) joinAgent(ctx context.Context, id string, overrides map[string]any) (*agentDir, error) {
	token, err := e.addDevice(ctx, id)
	if err != nil {
		return nil, err
	}
	a := &agentDir{id: id, dir: filepath.Join(e.dir, id)}
	if a.metricsAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, e.agent, "join", "--hub", e.hubURL, "--token", token, "--data", a.dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("outpost-agent join: %w\n%s", err, b)
	}
	if err := a.edit(map[string]any{"http": map[string]any{"listen": a.metricsAddr}}); err != nil {
		return nil, err
	}
	return a, a.edit(overrides)
}

func (a *agentDir) edit(overrides map[string]any) error {
	path := filepath.Join(a.dir, "agent.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := map[string]any{}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	merge(doc, overrides)
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		sv, okS := v.(map[string]any)
		dv, okD := dst[k].(map[string]any)
		if okS && okD {
			merge(dv, sv)
			continue
		}
		dst[k] = v
	}
}

func (e *env) startAgent(a *agentDir, logName string) (*daemon, error) {
	return e.spawn(e.agent, logName, "run", "--data", a.dir)
}

func (a *agentDir) metrics(ctx context.Context) (map[string]float64, error) {
	return scrape(ctx, "http://"+a.metricsAddr+"/metrics")
}

// scrape reads a Prometheus text exposition into series → value.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	return promscrape.Get(ctx, url)
}

func metricOf(m map[string]float64, name string) (float64, error) {
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("no metric %s", name)
	}
	return v, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// poll calls fn every interval until it returns nil, ctx ends or timeout
// passes; it returns fn's last error then.
func poll(ctx context.Context, timeout, interval time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// procStatus returns fields of /proc/PID/status in KiB (VmRSS, VmHWM…).
func procStatus(pid int) (map[string]int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, " kB")), 10, 64)
		if err == nil {
			out[k] = n
		}
	}
	return out, nil
}

// cpuSeconds is the user+system CPU time of process pid so far.
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// mustCPU is cpuSeconds, or 0 when pid's /proc entry cannot be read (the
// process has exited), for the benchmarks that only report CPU time.
func mustCPU(pid int) float64 {
	s, err := cpuSeconds(pid)
	if err != nil {
		return 0
	}
	return s
}
