//go:build linux

package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// helper is the test workload binary built by TestMain.
var helper string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "workload-helper-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// World-readable, so the user-switch test's workload can exec it.
	_ = os.Chmod(dir, 0o755)
	helper = filepath.Join(dir, "helper")
	code := 1
	out, err := exec.Command("go", "build", "-o", helper, "./testdata/helper").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the helper: %v\n%s", err, out)
	} else {
		code = m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// start runs a Supervisor until the test ends and returns it with a
// function that stops it and waits for Run to return.
func start(t *testing.T, opts Options) (*Supervisor, func()) {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 2 * time.Second
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func apply(t *testing.T, s *Supervisor, specs ...Spec) {
	t.Helper()
	if err := s.Apply(specs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func statusOf(s *Supervisor, name string) (Status, bool) {
	for _, st := range s.Status() {
		if st.Name == name {
			return st, true
		}
	}
	return Status{}, false
}

// waitStatus waits until name's status satisfies ok (which returns nil).
func waitStatus(t *testing.T, s *Supervisor, name string, timeout time.Duration, ok func(Status) error) Status {
	t.Helper()
	var last Status
	testutil.Eventually(t, timeout, func() error {
		st, found := statusOf(s, name)
		if !found {
			return fmt.Errorf("workload %q not in status", name)
		}
		last = st
		if err := ok(st); err != nil {
			return fmt.Errorf("%w (status %+v, logs %q)", err, st, s.Logs(name, 5))
		}
		return nil
	})
	return last
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func fastRestart() Restart {
	return Restart{BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
}

func TestHTTPServiceHealthy(t *testing.T) {
	s, _ := start(t, Options{})
	port := freePort(t)
	apply(t, s, Spec{
		Name: "web", Version: "1.0", Binary: helper, Args: []string{"serve", strconv.Itoa(port), "200"},
		Health:  &HealthCheck{Type: HealthHTTP, Port: port, Path: "/health", Interval: 20 * time.Millisecond},
		Restart: fastRestart(),
	})
	st := waitStatus(t, s, "web", 10*time.Second, func(st Status) error {
		if st.State != StateRunning || !st.Healthy || st.PID == 0 {
			return errors.New("not running and healthy")
		}
		return nil
	})
	if st.Version != "1.0" || st.Restarts != 0 || st.LastExit != nil {
		t.Errorf("status = %+v", st)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from 1.0" {
		t.Errorf("body = %q", body)
	}
	if logs := s.Logs("web", 0); !slices.Contains(logs, fmt.Sprintf("serving on %d", port)) {
		t.Errorf("logs = %q", logs)
	}
}

func TestTCPAndExecHealthChecks(t *testing.T) {
	s, _ := start(t, Options{})
	port := freePort(t)
	apply(t, s,
		Spec{Name: "tcp", Binary: helper, Args: []string{"serve", strconv.Itoa(port), "200"},
			Health: &HealthCheck{Type: HealthTCP, Port: port, Interval: 20 * time.Millisecond}},
		Spec{Name: "exec", Binary: helper, Args: []string{"term", "handle"},
			Health: &HealthCheck{Type: HealthExec, Command: []string{helper, "crash", filepath.Join(t.TempDir(), "f"), "0"}, Interval: 50 * time.Millisecond}},
	)
	for _, name := range []string{"tcp", "exec"} {
		waitStatus(t, s, name, 10*time.Second, func(st Status) error {
			if st.State != StateRunning || !st.Healthy {
				return errors.New("not running and healthy")
			}
			return nil
		})
	}
}

// startTimes reads the start times the crash helper appended to path.
func startTimes(path string) []time.Time {
	b, _ := os.ReadFile(path)
	var out []time.Time
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err == nil {
			out = append(out, time.Unix(0, n))
		}
	}
	return out
}

func TestCrashLoopBacksOffExponentially(t *testing.T) {
	s, _ := start(t, Options{})
	rec := filepath.Join(t.TempDir(), "starts")
	apply(t, s, Spec{
		Name: "crashy", Binary: helper, Args: []string{"crash", rec, "3"},
		Restart: Restart{BackoffMin: 20 * time.Millisecond, BackoffMax: 2 * time.Second},
	})
	waitStatus(t, s, "crashy", 10*time.Second, func(st Status) error {
		if st.State != StateBackoff || st.NextStart.IsZero() {
			return errors.New("not in backoff")
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := len(startTimes(rec)); n < 6 {
			return fmt.Errorf("%d starts", n)
		}
		return nil
	})
	times := startTimes(rec)[:6]
	var gaps []time.Duration
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	t.Logf("gaps between starts: %v", gaps)
	for i := 1; i < len(gaps); i++ {
		if gaps[i] <= gaps[i-1] {
			t.Errorf("gap %d (%s) is not longer than gap %d (%s); gaps %v", i, gaps[i], i-1, gaps[i-1], gaps)
		}
	}
	st, _ := statusOf(s, "crashy")
	if st.Restarts < 5 || st.LastExit == nil || st.LastExit.Code != 3 || st.LastExit.Reason != ReasonError {
		t.Errorf("status = %+v, last exit %+v", st, st.LastExit)
	}
}

func TestOnFailurePolicy(t *testing.T) {
	s, _ := start(t, Options{})
	dir := t.TempDir()
	onFailure := Restart{Policy: RestartOnFailure, BackoffMin: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond}
	apply(t, s,
		Spec{Name: "ok", Binary: helper, Args: []string{"crash", filepath.Join(dir, "ok"), "0"}, Restart: onFailure},
		Spec{Name: "failing", Binary: helper, Args: []string{"crash", filepath.Join(dir, "failing"), "1"}, Restart: onFailure},
	)
	st := waitStatus(t, s, "ok", 10*time.Second, func(st Status) error {
		if st.State != StateStopped || st.LastExit == nil {
			return errors.New("not stopped")
		}
		return nil
	})
	if st.LastExit.Reason != ReasonCompleted || st.LastExit.Code != 0 {
		t.Errorf("last exit = %+v", st.LastExit)
	}
	// The failing one is restarted; by its fourth restart the one that
	// exited 0 would have been restarted too.
	waitStatus(t, s, "failing", 10*time.Second, func(st Status) error {
		if st.Restarts < 4 {
			return errors.New("not restarted often enough yet")
		}
		return nil
	})
	if n := len(startTimes(filepath.Join(dir, "ok"))); n != 1 {
		t.Errorf("the workload that exited 0 started %d times, want 1", n)
	}
	if st, _ := statusOf(s, "ok"); st.Restarts != 0 || st.State != StateStopped {
		t.Errorf("status = %+v", st)
	}
}

func TestFailingHealthCheckRestarts(t *testing.T) {
	s, _ := start(t, Options{})
	port := freePort(t)
	apply(t, s, Spec{
		Name: "sick", Binary: helper, Args: []string{"serve", strconv.Itoa(port), "500"},
		Health:  &HealthCheck{Type: HealthHTTP, Port: port, Path: "/health", Interval: 30 * time.Millisecond, FailureThreshold: 3},
		Restart: fastRestart(),
	})
	waitStatus(t, s, "sick", 10*time.Second, func(st Status) error {
		if st.Healthy || !strings.Contains(st.HealthError, "status 500") {
			return errors.New("not reported unhealthy")
		}
		return nil
	})
	st := waitStatus(t, s, "sick", 10*time.Second, func(st Status) error {
		if st.Restarts < 1 || st.LastExit == nil {
			return errors.New("not restarted")
		}
		return nil
	})
	if st.LastExit.Reason != ReasonUnhealthy || !strings.Contains(st.LastExit.Error, "status 500") {
		t.Errorf("last exit = %+v", st.LastExit)
	}
	// It handled SIGTERM: a clean exit, not a kill.
	if st.LastExit.Code != 0 || st.LastExit.Signal != "" {
		t.Errorf("last exit = %+v, want code 0 after SIGTERM", st.LastExit)
	}
}

func TestGracefulStop(t *testing.T) {
	const grace = 300 * time.Millisecond
	s, stop := start(t, Options{StopGrace: grace})
	apply(t, s,
		Spec{Name: "polite", Binary: helper, Args: []string{"term", "handle"}},
		Spec{Name: "stubborn", Binary: helper, Args: []string{"term", "ignore"}},
	)
	pids := map[string]int{}
	for _, name := range []string{"polite", "stubborn"} {
		st := waitStatus(t, s, name, 10*time.Second, func(st Status) error {
			if st.State != StateRunning || !slices.Contains(s.Logs(name, 0), "ready") {
				return errors.New("not ready")
			}
			return nil
		})
		pids[name] = st.PID
	}
	began := time.Now()
	stop()
	took := time.Since(began)
	polite, _ := statusOf(s, "polite")
	stubborn, _ := statusOf(s, "stubborn")
	if polite.State != StateStopped || polite.LastExit == nil || polite.LastExit.Code != 0 || polite.LastExit.Signal != "" ||
		polite.LastExit.Reason != ReasonStopped {
		t.Errorf("polite: %+v, last exit %+v", polite, polite.LastExit)
	}
	if !slices.Contains(s.Logs("polite", 0), "got SIGTERM") {
		t.Errorf("polite logs = %q", s.Logs("polite", 0))
	}
	if stubborn.State != StateStopped || stubborn.LastExit == nil || stubborn.LastExit.Signal != syscall.SIGKILL.String() {
		t.Errorf("stubborn: %+v, last exit %+v", stubborn, stubborn.LastExit)
	}
	if took < grace {
		t.Errorf("shutdown took %s, less than the grace period %s", took, grace)
	}
	for name, pid := range pids {
		if !processGone(pid) {
			t.Errorf("%s (pid %d) still running", name, pid)
		}
	}
}

func TestApplyReplacesAndRemoves(t *testing.T) {
	s, _ := start(t, Options{})
	v := func(version string) Spec {
		return Spec{Name: "app", Version: version, Binary: helper, Args: []string{"id"}}
	}
	other := Spec{Name: "other", Binary: helper, Args: []string{"id"}}
	apply(t, s, v("1"), other)
	running := func(version string) func(Status) error {
		return func(st Status) error {
			if st.State != StateRunning || st.Version != version || !slices.Contains(s.Logs(st.Name, 0), "version="+version+" uid="+strconv.Itoa(os.Getuid())) {
				return fmt.Errorf("version %s not running", version)
			}
			return nil
		}
	}
	old := waitStatus(t, s, "app", 10*time.Second, running("1"))
	otherPID := waitStatus(t, s, "other", 10*time.Second, running("")).PID

	apply(t, s, v("2"), other)
	st := waitStatus(t, s, "app", 10*time.Second, running("2"))
	if st.PID == old.PID || !processGone(old.PID) {
		t.Errorf("old pid %d, new pid %d: old process not replaced", old.PID, st.PID)
	}
	if st.Restarts != 0 {
		t.Errorf("restarts = %d after a replacement, want 0", st.Restarts)
	}
	if now, _ := statusOf(s, "other"); now.PID != otherPID {
		t.Errorf("unchanged workload restarted: pid %d → %d", otherPID, now.PID)
	}

	apply(t, s, other)
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, found := statusOf(s, "app"); found {
			return errors.New("app still listed")
		}
		return nil
	})
	if !processGone(st.PID) {
		t.Errorf("removed workload's process %d still running", st.PID)
	}
	if s.Logs("app", 0) != nil {
		t.Error("logs of a removed workload still kept")
	}
}

func TestPersistedDesiredStateRestarts(t *testing.T) {
	dir := t.TempDir()
	s1, stop1 := start(t, Options{DataDir: dir})
	spec := Spec{Name: "persisted", Version: "7", Binary: helper, Args: []string{"id"}, Env: map[string]string{"SECRET": "x"}}
	apply(t, s1, spec)
	first := waitStatus(t, s1, "persisted", 10*time.Second, func(st Status) error {
		if st.State != StateRunning {
			return errors.New("not running")
		}
		return nil
	})
	stop1()
	if !processGone(first.PID) {
		t.Errorf("pid %d survived the supervisor's shutdown", first.PID)
	}
	if err := s1.Apply(nil); !errors.Is(err, ErrStopped) {
		t.Errorf("Apply after Run = %v, want ErrStopped", err)
	}
	if err := s1.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "workloads", "desired.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("desired.json: %v, mode %v", err, fi.Mode())
	}

	s2, _ := start(t, Options{DataDir: dir}) // no Apply: edge autonomy
	st := waitStatus(t, s2, "persisted", 10*time.Second, func(st Status) error {
		if st.State != StateRunning || st.Version != "7" {
			return errors.New("persisted workload not running")
		}
		return nil
	})
	if st.PID == first.PID {
		t.Errorf("same pid %d", st.PID)
	}
}

func TestCorruptDesiredFileIsSetAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "workloads"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "workloads", "desired.json")
	if err := os.WriteFile(path, []byte(`{"workloads":[{"name":"../x"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := start(t, Options{DataDir: dir})
	if st := s.Status(); len(st) != 0 {
		t.Errorf("status = %+v", st)
	}
	if _, err := os.Stat(path + ".bad"); err != nil {
		t.Errorf("bad file not kept aside: %v", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	s, _ := start(t, Options{})
	onFailure := Restart{Policy: RestartOnFailure, BackoffMin: time.Second, BackoffMax: time.Second}
	apply(t, s,
		Spec{Name: "hog", Binary: helper, Args: []string{"alloc", "200"}, Resources: Resources{MemoryBytes: 64 << 20}, Restart: onFailure},
		// The control: the same program with room to spare succeeds, so
		// the limit, not the program, makes the difference.
		Spec{Name: "roomy", Binary: helper, Args: []string{"alloc", "200"}, Resources: Resources{MemoryBytes: 1 << 30}, Restart: onFailure},
	)
	hog := waitStatus(t, s, "hog", 10*time.Second, func(st Status) error {
		if st.LastExit == nil {
			return errors.New("not exited yet")
		}
		return nil
	})
	roomy := waitStatus(t, s, "roomy", 10*time.Second, func(st Status) error {
		if st.LastExit == nil {
			return errors.New("not exited yet")
		}
		return nil
	})
	mem := hog.Limits.Memory
	t.Logf("memory limit enforced=%v via %q (reason %q); CI=%q; hog exit %+v", mem.Enforced, mem.Via, mem.Reason, os.Getenv("CI"), hog.LastExit)
	if !mem.Enforced || (mem.Via != ViaCgroupV2 && mem.Via != ViaWatchdog) {
		t.Fatalf("memory limit not enforced: %+v (neither cgroup v2 nor the watchdog)", mem)
	}
	if roomy.LastExit.Reason != ReasonCompleted || !slices.Contains(s.Logs("roomy", 0), "allocated 200 MiB") {
		t.Fatalf("control run failed: %+v, logs %q", roomy.LastExit, s.Logs("roomy", 0))
	}
	if hog.LastExit.Reason != ReasonOOMKilled {
		t.Fatalf("hog ended %+v under a 64 MiB limit, want %q; logs %q", hog.LastExit, ReasonOOMKilled, s.Logs("hog", 0))
	}
	switch mem.Via {
	case ViaCgroupV2:
		if slices.Contains(s.Logs("hog", 0), "allocated 200 MiB") {
			t.Errorf("200 MiB allocated under a 64 MiB cgroup limit: logs %q", s.Logs("hog", 0))
		}
		if hog.Limits.CPU.Via != ViaNone || hog.Limits.CPU.Reason != "no limit requested" {
			t.Errorf("cpu limit = %+v", hog.Limits.CPU)
		}
	case ViaWatchdog:
		if !strings.Contains(hog.LastExit.Error, "watchdog") || hog.LastExit.Signal == "" {
			t.Errorf("last exit = %+v; want killed by the watchdog", hog.LastExit)
		}
	}
}

func TestCPULimitWithoutCgroupV2IsReportedNotEnforced(t *testing.T) {
	s, _ := start(t, Options{CgroupRoot: t.TempDir()}) // no cgroup.controllers: not cgroup v2
	apply(t, s, Spec{Name: "cpu", Binary: helper, Args: []string{"id"}, Resources: Resources{CPUMilli: 500}})
	st := waitStatus(t, s, "cpu", 10*time.Second, func(st Status) error {
		if st.State != StateRunning {
			return errors.New("not running")
		}
		return nil
	})
	if c := st.Limits.CPU; c.Enforced || c.Via != ViaNone || c.Requested != 500 || !strings.Contains(c.Reason, "cgroup v2") {
		t.Errorf("cpu limit = %+v", c)
	}
	if m := st.Limits.Memory; m.Enforced || m.Via != ViaNone || m.Reason != "no limit requested" {
		t.Errorf("memory limit = %+v", m)
	}
}

// TestCgroupV2Files runs against a fake cgroup v2 tree: the files a real
// hierarchy would get, and the OOM report from memory.events.
func TestCgroupV2Files(t *testing.T) {
	root := t.TempDir()
	own, err := ownCgroupPath()
	if err != nil {
		t.Skipf("no cgroup v2 line in /proc/self/cgroup: %v", err)
	}
	base := filepath.Join(root, own)
	for name, content := range map[string]string{
		filepath.Join(root, "cgroup.controllers"):     "cpuset cpu io memory pids",
		filepath.Join(base, "cgroup.subtree_control"): "cpu memory",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := start(t, Options{CgroupRoot: root})
	apply(t, s, Spec{Name: "limited", Binary: helper, Args: []string{"term", "ignore"},
		Resources: Resources{CPUMilli: 250, MemoryBytes: 64 << 20}, Restart: Restart{BackoffMin: time.Second}})
	st := waitStatus(t, s, "limited", 10*time.Second, func(st Status) error {
		if st.State != StateRunning {
			return errors.New("not running")
		}
		return nil
	})
	want := Limits{
		CPU:    LimitStatus{Requested: 250, Enforced: true, Via: ViaCgroupV2},
		Memory: LimitStatus{Requested: 64 << 20, Enforced: true, Via: ViaCgroupV2},
	}
	if st.Limits != want {
		t.Errorf("limits = %+v, want %+v", st.Limits, want)
	}
	cg := filepath.Join(base, "workload-limited")
	for file, content := range map[string]string{
		"memory.max":      "67108864",
		"memory.swap.max": "0",
		"cpu.max":         "25000 100000",
		"cgroup.procs":    strconv.Itoa(st.PID),
	} {
		if b, err := os.ReadFile(filepath.Join(cg, file)); err != nil || string(b) != content {
			t.Errorf("%s = %q, %v; want %q", file, b, err, content)
		}
	}
	// Pretend the OOM killer struck.
	if err := os.WriteFile(filepath.Join(cg, "memory.events"), []byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, s, "limited", 10*time.Second, func(st Status) error {
		if st.LastExit == nil {
			return errors.New("no exit yet")
		}
		return nil
	})
	if st.LastExit.Reason != ReasonOOMKilled || st.LastExit.Signal != syscall.SIGKILL.String() {
		t.Errorf("last exit = %+v", st.LastExit)
	}
}

func TestLogsRingAndRotation(t *testing.T) {
	dir := t.TempDir()
	s, _ := start(t, Options{DataDir: dir, LogLines: 100, LogFileBytes: 32 << 10, LogFileKeep: 3})
	apply(t, s, Spec{Name: "chatty", Binary: helper, Args: []string{"print", "3000"}})
	testutil.Eventually(t, 10*time.Second, func() error {
		if l := s.Logs("chatty", 1); !slices.Equal(l, []string{"printed"}) {
			return fmt.Errorf("last line %q", l)
		}
		return nil
	})
	all := s.Logs("chatty", 0)
	if len(all) != 100 || !strings.HasPrefix(all[0], "line 2901 ") || all[99] != "printed" {
		t.Errorf("ring holds %d lines, first %q", len(all), all[0])
	}
	if tail := s.Logs("chatty", 3); len(tail) != 3 || !strings.HasPrefix(tail[0], "line 2998 ") {
		t.Errorf("tail 3 = %q", tail)
	}
	if s.Logs("nope", 10) != nil {
		t.Error("logs of an unknown workload")
	}
	logDir := filepath.Join(dir, "workloads", "chatty")
	entries, err := os.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, _ := e.Info()
		if fi.Size() > 32<<10 {
			t.Errorf("%s is %d bytes, above the rotation size", e.Name(), fi.Size())
		}
	}
	if !slices.Equal(names, []string{"log", "log.1", "log.2", "log.3"}) {
		t.Errorf("log files = %q", names)
	}
	b, _ := os.ReadFile(filepath.Join(logDir, "log"))
	if !strings.HasSuffix(string(b), " printed\n") {
		t.Errorf("log file ends with %q", b[max(0, len(b)-40):])
	}
}

func TestLongLinesAreSplit(t *testing.T) {
	l := newLogSink(10, 0, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l.copyLines(strings.NewReader(strings.Repeat("a", maxLineBytes+10) + "\nshort\nno newline"))
	got := l.tail(0)
	if len(got) != 4 || len(got[0]) != maxLineBytes || got[1] != strings.Repeat("a", 10) || got[2] != "short" || got[3] != "no newline" {
		t.Errorf("lines = %d %q", len(got), got[1:])
	}
}

func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	uid, _, err := credential("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	s, _ := start(t, Options{})
	apply(t, s, Spec{Name: "unpriv", Version: "1", Binary: helper, Args: []string{"id"}, User: "nobody"})
	want := fmt.Sprintf("version=1 uid=%d", uid.Uid)
	waitStatus(t, s, "unpriv", 10*time.Second, func(st Status) error {
		if !slices.Contains(s.Logs("unpriv", 0), want) {
			return fmt.Errorf("no %q in logs", want)
		}
		return nil
	})
}

func TestStartFailureIsRetried(t *testing.T) {
	s, _ := start(t, Options{})
	apply(t, s, Spec{Name: "missing", Binary: "/nonexistent/binary", Restart: fastRestart()})
	st := waitStatus(t, s, "missing", 10*time.Second, func(st Status) error {
		if st.State != StateFailed || st.Restarts < 2 {
			return errors.New("not failed and retried")
		}
		return nil
	})
	if st.LastExit == nil || st.LastExit.Reason != ReasonStartFailed || !strings.Contains(st.LastExit.Error, "/nonexistent/binary") {
		t.Errorf("last exit = %+v", st.LastExit)
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	good := Spec{Name: "ok-1", Binary: "/bin/true", Health: &HealthCheck{Type: HealthHTTP, Port: 80}}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	bad := Spec{
		Name:      "Bad/Name",
		Binary:    "relative/bin",
		Env:       map[string]string{"1X": "v"},
		User:      "root",
		Resources: Resources{CPUMilli: -1, MemoryBytes: 1000},
		Health:    &HealthCheck{Type: "grpc", Interval: time.Second, Timeout: 2 * time.Second},
		Restart:   Restart{Policy: "never", BackoffMin: time.Minute, BackoffMax: time.Second},
	}
	err := bad.Validate()
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("err = %v, want ErrInvalidSpec", err)
	}
	for _, want := range []string{
		"name must be", "not an absolute path", `env name "1X"`, "is root", "cpuMilli is negative",
		"memoryBytes must be", `health.type "grpc"`, "health.timeout 2s exceeds", `restart.policy "never"`,
		"backoffMax 1s is below",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := len(strings.Split(err.Error(), "\n")); n != 10 {
		t.Errorf("%d problems reported, want 10:\n%v", n, err)
	}

	s, err := New(Options{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Apply([]Spec{good, good, bad})
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "name used twice") {
		t.Errorf("Apply = %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "desired.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an invalid set was persisted: %v", err)
	}
}

func TestNextBackoff(t *testing.T) {
	r := Restart{BackoffMin: time.Second, BackoffMax: 5 * time.Second}
	var got []time.Duration
	var b time.Duration
	for range 5 {
		b = nextBackoff(b, r)
		got = append(got, b)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("backoffs = %v, want %v", got, want)
	}
}
