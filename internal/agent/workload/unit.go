package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/internal/execbusy"
)

const (
	// defaultPath is the PATH a workload gets unless its Env sets one.
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// outputDrain is how long the output of an exited process may still
	// be read; a daemonized grandchild outside the process group can hold
	// the pipe open forever.
	outputDrain = 2 * time.Second
)

// unit supervises one workload name: one goroutine (run) that starts the
// process, waits for it, restarts it with backoff, replaces it when its
// Spec changes and stops it when removed.
type unit struct {
	name   string
	s      *Supervisor
	log    *slog.Logger
	logs   *logSink
	ctx    context.Context // canceled on removal and at shutdown
	cancel context.CancelFunc
	// specs carries a changed Spec to run; it holds at most the latest.
	specs chan Spec
	// prev is the removed unit of the same name that must finish first.
	prev *unit
	done chan struct{} // closed when run returns
	// initial is the Spec run starts with.
	initial Spec
	// sent is the last Spec handed over (initial or via specs); only
	// Supervisor.reconcile touches it, with Supervisor.mu held.
	sent []byte

	mu sync.Mutex // guards st
	st Status
	// current is the specKey of the Spec the unit runs (or is starting);
	// guarded by mu.
	current []byte
}

// newUnit is called with s.mu held.
func (s *Supervisor) newUnit(ctx context.Context, spec Spec, prev *unit) *unit {
	ctx, cancel := context.WithCancel(ctx)
	u := &unit{
		name: spec.Name, s: s, log: s.log.With("workload", spec.Name), logs: s.sink(spec.Name),
		ctx: ctx, cancel: cancel, specs: make(chan Spec, 1), prev: prev, done: make(chan struct{}),
		initial: spec, sent: specKey(spec),
	}
	u.st = Status{Name: spec.Name, Version: spec.Version, State: StateStarting}
	return u
}

// specKey is what Spec changes are detected by: the JSON encoding, which
// treats nil and empty slices and maps alike.
func specKey(s Spec) []byte {
	b, _ := json.Marshal(s)
	return b
}

// update hands u a Spec if it differs from the last one. Called by
// reconcile with s.mu held.
func (u *unit) update(spec Spec) {
	k := specKey(spec)
	if string(k) == string(u.sent) {
		return
	}
	u.sent = k
	select {
	case <-u.specs: // superseded before run took it
	default:
	}
	u.specs <- spec
}

// remove makes run stop the process and return.
func (u *unit) remove() { u.cancel() }

// status returns u's status. want is the specKey of the desired Spec:
// until u runs that Spec, the status says so (starting, not healthy, the
// desired version), so that nobody reads the old process's health as the
// new Spec's.
func (u *unit) status(want []byte, wantVersion string) Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.st
	if want != nil && string(want) != string(u.current) {
		st.State, st.Healthy, st.Version, st.HealthError = StateStarting, false, wantVersion, ""
	}
	if st.LastExit != nil {
		e := *st.LastExit
		st.LastExit = &e
	}
	return st
}

func (u *unit) setStatus(f func(st *Status)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f(&u.st)
}

// run is the unit's goroutine.
func (u *unit) run() {
	defer close(u.done)
	defer u.cancel()
	if u.prev != nil {
		select {
		case <-u.prev.done:
		case <-u.ctx.Done():
			u.setStatus(func(st *Status) { st.State = StateStopped })
			return
		}
	}
	spec := u.initial
	var backoff time.Duration
	restarts := 0
	for {
		r := spec.Restart.withDefaults()
		key := specKey(spec)
		u.setStatus(func(st *Status) {
			st.Version, st.Restarts, st.NextStart = spec.Version, restarts, time.Time{}
			u.current = key
		})
		p, err := u.start(spec)
		var ex Exit
		if err != nil {
			u.log.Error("starting workload", "err", err)
			ex = Exit{Code: -1, Time: u.s.opts.Now(), Reason: ReasonStartFailed, Error: err.Error()}
		} else {
			next, outcome := u.supervise(p, spec)
			switch outcome {
			case replaced:
				u.log.Info("workload replaced", "version", next.Version)
				spec, backoff, restarts = next, 0, 0
				continue
			case removed:
				u.setStatus(func(st *Status) { st.State = StateStopped })
				return
			}
			ex = p.exit
			if ex.Time.Sub(p.started) >= r.StableAfter {
				backoff = 0
			}
		}
		u.setStatus(func(st *Status) { st.LastExit, st.PID, st.Healthy = &ex, 0, false })
		if err == nil && r.Policy == RestartOnFailure && ex.Reason == ReasonCompleted {
			u.log.Info("workload completed; not restarting (policy on-failure)")
			u.setStatus(func(st *Status) { st.State = StateStopped })
			select {
			case next := <-u.specs:
				spec, backoff, restarts = next, 0, 0
				continue
			case <-u.ctx.Done():
				return
			}
		}
		backoff = nextBackoff(backoff, r)
		state := StateBackoff
		if err != nil {
			state = StateFailed
		}
		if err == nil {
			u.log.Warn("workload exited; restarting after backoff", "reason", ex.Reason, "code", ex.Code, "signal", ex.Signal, "backoff", backoff)
		}
		u.setStatus(func(st *Status) { st.State, st.NextStart = state, u.s.opts.Now().Add(backoff) })
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
			restarts++
		case next := <-u.specs:
			t.Stop()
			spec, backoff, restarts = next, 0, 0
		case <-u.ctx.Done():
			t.Stop()
			u.setStatus(func(st *Status) { st.State, st.NextStart = StateStopped, time.Time{} })
			return
		}
	}
}

// nextBackoff doubles the previous wait within [BackoffMin, BackoffMax].
func nextBackoff(prev time.Duration, r Restart) time.Duration {
	if prev <= 0 {
		return r.BackoffMin
	}
	return min(prev*2, r.BackoffMax)
}

type outcome int

const (
	exited   outcome = iota // the process ended (by itself or after failed liveness)
	replaced                // a new Spec arrived; the process was stopped
	removed                 // the unit was removed or the supervisor stops
)

// supervise waits until p exits, fails its liveness check, is replaced or
// removed. In every case p has exited when supervise returns.
func (u *unit) supervise(p *proc, spec Spec) (Spec, outcome) {
	hctx, hcancel := context.WithCancel(context.Background())
	var hwg sync.WaitGroup
	stopHealth := func() { hcancel(); hwg.Wait() }
	defer stopHealth()
	unhealthy := make(chan error, 1)
	if spec.Health != nil {
		hc := spec.Health.withDefaults()
		hwg.Go(func() { u.healthLoop(hctx, hc, p, unhealthy) })
	}
	select {
	case <-p.exited:
		return Spec{}, exited
	case err := <-unhealthy:
		stopHealth()
		u.log.Warn("workload unhealthy; restarting it", "err", err)
		u.stop(p, ReasonUnhealthy, err.Error())
		return Spec{}, exited
	case next := <-u.specs:
		stopHealth()
		u.stop(p, ReasonStopped, "replaced")
		return next, replaced
	case <-u.ctx.Done():
		stopHealth()
		u.stop(p, ReasonStopped, "")
		return Spec{}, removed
	}
}

// stop sends SIGTERM to p's process group, SIGKILL after the grace period,
// waits for p and records why it ended.
func (u *unit) stop(p *proc, reason, detail string) {
	u.setStatus(func(st *Status) { st.State = StateStopping })
	_ = signalGroup(p.pid, syscall.SIGTERM)
	t := time.NewTimer(u.s.opts.StopGrace)
	select {
	case <-p.exited:
		t.Stop()
	case <-t.C:
		u.log.Warn("workload ignored SIGTERM; killing its process group", "grace", u.s.opts.StopGrace)
		_ = signalGroup(p.pid, syscall.SIGKILL)
		p.plan.killAll()
		<-p.exited
	}
	if p.exit.Reason != ReasonOOMKilled {
		p.exit.Reason, p.exit.Error = reason, detail
	}
	u.setStatus(func(st *Status) { st.LastExit, st.PID, st.Healthy = &p.exit, 0, false })
}

// healthLoop checks p every interval and sends to unhealthy after
// FailureThreshold consecutive failures.
func (u *unit) healthLoop(ctx context.Context, hc HealthCheck, p *proc, unhealthy chan<- error) {
	t := time.NewTicker(hc.Interval)
	defer t.Stop()
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := u.s.checker.check(ctx, hc, p.env, p.cred)
		if ctx.Err() != nil {
			return
		}
		u.setStatus(func(st *Status) {
			st.Healthy = err == nil
			st.HealthError = ""
			if err != nil {
				st.HealthError = err.Error()
			} else if st.State == StateStarting {
				st.State = StateRunning
			}
		})
		if err == nil {
			fails = 0
			continue
		}
		fails++
		if fails >= hc.FailureThreshold {
			unhealthy <- err
			return
		}
	}
}

// proc is one started process.
type proc struct {
	pid     int
	started time.Time
	plan    *limitPlan
	env     []string
	cred    *procCred
	// exited is closed once the process was reaped, its group killed and
	// its output read; exit is valid from then on.
	exited chan struct{}
	exit   Exit
}

// start starts spec's process with its limits, output capture and the
// goroutine that reaps it.
func (u *unit) start(spec Spec) (*proc, error) {
	cred, home, err := credential(spec.User)
	if err != nil {
		return nil, err
	}
	env := buildEnv(spec, home)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating output pipe: %w", err)
	}
	plan := u.s.limiter.prepare(spec.Name, spec.Resources)
	command := func(useFD bool) *exec.Cmd {
		cmd := exec.Command(spec.Binary, spec.Args...)
		cmd.Env, cmd.Dir = env, "/"
		cmd.Stdout, cmd.Stderr = pw, pw
		cmd.SysProcAttr = newSysProcAttr()
		setCredential(cmd, cred)
		plan.sysProcAttr(cmd.SysProcAttr, useFD)
		return cmd
	}
	useFD := plan.canRetryWithoutFD()
	// A binary installed a moment ago can be busy for a moment (execbusy).
	cmd, err := execbusy.Start(func() *exec.Cmd { return command(useFD) })
	if err != nil && useFD {
		u.log.Debug("starting in the cgroup failed; starting, then moving the process", "err", err)
		useFD = false
		cmd, err = execbusy.Start(func() *exec.Cmd { return command(false) })
	}
	_ = pw.Close()
	if err != nil {
		_ = pr.Close()
		plan.cleanup()
		return nil, fmt.Errorf("starting %s: %w", spec.Binary, err)
	}
	plan.afterStart(cmd.Process.Pid, useFD)
	p := &proc{pid: cmd.Process.Pid, started: u.s.opts.Now(), plan: plan, env: env, cred: cred, exited: make(chan struct{})}
	u.log.Info("workload started", "pid", p.pid, "version", spec.Version,
		"memory_limit_via", plan.status.Memory.Via, "cpu_limit_via", plan.status.CPU.Via)
	u.setStatus(func(st *Status) {
		st.State, st.PID, st.StartedAt, st.Limits = StateStarting, p.pid, p.started, plan.status
		st.Healthy, st.HealthError = spec.Health == nil, ""
		if spec.Health == nil {
			st.State = StateRunning
		}
	})
	read := make(chan struct{})
	go func() {
		defer close(read)
		u.logs.copyLines(pr)
	}()
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		plan.watch(p.pid, stopWatch)
	}()
	// This goroutine ends by closing p.exited, which run always waits for.
	go func() {
		_ = cmd.Wait()
		close(stopWatch)
		<-watched
		// Whatever the process left behind in its group or cgroup dies
		// with it.
		_ = signalGroup(p.pid, syscall.SIGKILL)
		plan.killAll()
		t := time.NewTimer(outputDrain)
		select {
		case <-read:
		case <-t.C:
			_ = pr.Close()
			<-read
		}
		t.Stop()
		_ = pr.Close()
		p.exit = exitOf(cmd.ProcessState, plan.oomKilled(), u.s.opts.Now())
		if msg := plan.overLimitError(); msg != "" {
			p.exit.Error = msg
		}
		plan.cleanup()
		close(p.exited)
	}()
	return p, nil
}

// exitOf describes how a reaped process ended.
func exitOf(ps *os.ProcessState, oom bool, now time.Time) Exit {
	if ps == nil {
		return Exit{Code: -1, Time: now, Reason: ReasonError, Error: "process state unknown"}
	}
	ex := Exit{Code: ps.ExitCode(), Signal: exitSignal(ps), Time: now}
	switch {
	case oom:
		ex.Reason = ReasonOOMKilled
	case ex.Signal != "":
		ex.Reason = ReasonSignaled
	case ex.Code == 0:
		ex.Reason = ReasonCompleted
	default:
		ex.Reason = ReasonError
	}
	return ex
}

// buildEnv returns the process environment: a fixed base, then spec.Env.
// The agent's own environment (which may hold credentials) is not passed.
func buildEnv(spec Spec, home string) []string {
	m := map[string]string{
		"PATH":                     defaultPath,
		"OUTPOST_WORKLOAD":         spec.Name,
		"OUTPOST_WORKLOAD_VERSION": spec.Version,
	}
	if home != "" {
		m["HOME"], m["USER"] = home, spec.User
	}
	for k, v := range spec.Env {
		m[k] = v
	}
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}
