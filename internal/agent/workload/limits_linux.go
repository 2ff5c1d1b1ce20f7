package workload

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cpuPeriod is the cpu.max period in microseconds (the kernel default).
const cpuPeriod = 100000

// agentLeaf is the child cgroup the agent moves itself into when its own
// cgroup holds processes, because cgroup v2 enables controllers for
// children only in a cgroup without processes of its own.
const agentLeaf = "agent"

// limiter decides, once per Supervisor, how limits are enforced: with
// child cgroups of the agent's cgroup v2 cgroup, or, when that is not
// possible, with the agent's resident-memory watchdog for memory and
// nothing for CPU.
type limiter struct {
	// base is the cgroup directory workload cgroups are created in; ""
	// when cgroup v2 is not usable, and then noV2 says why.
	base string
	noV2 string
}

// newLimiter probes the cgroup v2 hierarchy mounted at root.
func newLimiter(root string) *limiter {
	base, err := cgroupBase(root)
	if err != nil {
		return &limiter{noV2: err.Error()}
	}
	return &limiter{base: base}
}

// cgroupBase checks that root is a cgroup v2 hierarchy offering memory and
// cpu, finds the agent's cgroup in it, checks it is writable and makes its
// children get the memory and cpu controllers.
func cgroupBase(root string) (string, error) {
	ctrl, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return "", fmt.Errorf("no cgroup v2 hierarchy at %s (cgroup v1 or hybrid): %w", root, err)
	}
	if !hasControllers(ctrl) {
		return "", fmt.Errorf("cgroup v2 at %s lacks the memory or cpu controller (has %q)", root, strings.TrimSpace(string(ctrl)))
	}
	own, err := ownCgroupPath()
	if err != nil {
		return "", err
	}
	base := filepath.Join(root, own)
	if filepath.Base(base) == agentLeaf {
		// A previous Supervisor in this process moved the agent here.
		base = filepath.Dir(base)
	}
	if err := unix.Access(base, unix.W_OK); err != nil {
		return "", fmt.Errorf("the agent's cgroup %s is not writable (run as root or with systemd Delegate=yes): %w", base, err)
	}
	sub, err := os.ReadFile(filepath.Join(base, "cgroup.subtree_control"))
	if err != nil {
		return "", fmt.Errorf("reading cgroup.subtree_control: %w", err)
	}
	if hasControllers(sub) {
		return base, nil
	}
	err = os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+memory +cpu"), 0o644)
	if errors.Is(err, syscall.EBUSY) {
		// The agent's cgroup holds processes: move the agent into a leaf.
		leaf := filepath.Join(base, agentLeaf)
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("creating cgroup %s: %w", leaf, err)
		}
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return "", fmt.Errorf("moving the agent into cgroup %s: %w", leaf, err)
		}
		err = os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+memory +cpu"), 0o644)
	}
	if err != nil {
		return "", fmt.Errorf("enabling memory and cpu controllers in %s: %w", base, err)
	}
	return base, nil
}

func hasControllers(list []byte) bool {
	f := strings.Fields(string(list))
	var mem, cpu bool
	for _, c := range f {
		mem = mem || c == "memory"
		cpu = cpu || c == "cpu"
	}
	return mem && cpu
}

// ownCgroupPath returns the agent's cgroup v2 path from /proc/self/cgroup
// (the "0::" line).
func ownCgroupPath() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("reading /proc/self/cgroup: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

// limitPlan is how one process start gets its limits.
type limitPlan struct {
	status Limits
	// cg is the workload's cgroup directory, "" without cgroup v2.
	cg string
	// cgFD is an open descriptor of cg for CLONE_INTO_CGROUP, -1 if none.
	cgFD int
	// oomBase is memory.events' oom_kill before the start.
	oomBase int64
	// rssMax is the resident memory above which the watchdog kills the
	// process (no cgroup v2), 0 for none.
	rssMax int64
	// overLimit holds the watchdog's message once it killed the process.
	overLimit atomic.Pointer[string]
}

// watchdogInterval is how often the watchdog reads a process's resident
// memory.
const watchdogInterval = 250 * time.Millisecond

// prepare creates and configures the cgroup for a start of workload name,
// or plans the watchdog fallback. It never fails: what could not be set up
// is reported in the plan's status.
func (l *limiter) prepare(name string, r Resources) *limitPlan {
	p := &limitPlan{cgFD: -1}
	p.status.CPU.Requested, p.status.Memory.Requested = r.CPUMilli, r.MemoryBytes
	noV2 := l.noV2
	if l.base != "" {
		err := p.setupCgroup(filepath.Join(l.base, "workload-"+name), r)
		if err == nil {
			p.status.CPU = LimitStatus{Requested: r.CPUMilli, Enforced: r.CPUMilli > 0, Via: ViaCgroupV2}
			p.status.Memory = LimitStatus{Requested: r.MemoryBytes, Enforced: r.MemoryBytes > 0, Via: ViaCgroupV2}
			notRequested(&p.status)
			return p
		}
		p.release()
		p.cg = ""
		noV2 = err.Error()
	}
	if r.CPUMilli > 0 {
		p.status.CPU = LimitStatus{Requested: r.CPUMilli, Via: ViaNone, Reason: "cgroup v2 not usable (" + noV2 + "); no fallback limits CPU bandwidth"}
	}
	if r.MemoryBytes > 0 {
		// RLIMIT_AS would be the classic fallback, but it caps virtual
		// address space: a Go program reserves far more than it uses and
		// does not even start under a limit of a few hundred MiB.
		p.rssMax = r.MemoryBytes
		p.status.Memory = LimitStatus{Requested: r.MemoryBytes, Enforced: true, Via: ViaWatchdog,
			Reason: "cgroup v2 not usable (" + noV2 + "); the agent checks the process's resident memory every " +
				watchdogInterval.String() + " and kills it above the limit"}
	}
	notRequested(&p.status)
	return p
}

func notRequested(l *Limits) {
	for _, s := range []*LimitStatus{&l.CPU, &l.Memory} {
		if s.Requested == 0 {
			*s = LimitStatus{Via: ViaNone, Reason: "no limit requested"}
		}
	}
}

func (p *limitPlan) setupCgroup(dir string, r Resources) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating cgroup %s: %w", dir, err)
	}
	p.cg = dir
	mem, cpu := "max", fmt.Sprintf("max %d", cpuPeriod)
	if r.MemoryBytes > 0 {
		mem = strconv.FormatInt(r.MemoryBytes, 10)
	}
	if r.CPUMilli > 0 {
		cpu = fmt.Sprintf("%d %d", max(r.CPUMilli*cpuPeriod/1000, 1000), cpuPeriod)
	}
	if err := writeCgroupFile(dir, "memory.max", mem); err != nil {
		return err
	}
	if r.MemoryBytes > 0 {
		// Without this the kernel swaps instead of enforcing the limit.
		// Kernels without swap accounting lack the file.
		_ = writeCgroupFile(dir, "memory.swap.max", "0")
	}
	if err := writeCgroupFile(dir, "cpu.max", cpu); err != nil {
		return err
	}
	p.oomBase = oomKills(dir)
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening cgroup %s: %w", dir, err)
	}
	p.cgFD = fd
	return nil
}

func writeCgroupFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o644); err != nil {
		return fmt.Errorf("writing %s to %s: %w", value, name, err)
	}
	return nil
}

// oomKills reads oom_kill from dir's memory.events, 0 when unreadable.
func oomKills(dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, "memory.events"))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "oom_kill "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// sysProcAttr makes the child start inside the cgroup (CLONE_INTO_CGROUP)
// when there is one, so no instruction of it runs unlimited.
// It also has the kernel SIGKILL the child when the agent dies, so that
// an agent killed with SIGKILL leaves no workload behind that would hold
// its port when the agent starts again.
func (p *limitPlan) sysProcAttr(a *syscall.SysProcAttr, useFD bool) {
	a.Pdeathsig = syscall.SIGKILL
	a.UseCgroupFD = useFD && p.cgFD >= 0
	a.CgroupFD = 0
	if a.UseCgroupFD {
		a.CgroupFD = p.cgFD
	}
}

// canRetryWithoutFD reports whether a failed start may be retried without
// CLONE_INTO_CGROUP (kernels before 5.7, seccomp filters refusing clone3,
// and a test's fake cgroup directory refuse it).
func (p *limitPlan) canRetryWithoutFD() bool { return p.cgFD >= 0 }

// afterStart finishes the limits of the started process pid: it moves pid
// into the cgroup when CLONE_INTO_CGROUP was not used. Until then the
// process runs unlimited for the few microseconds between exec and this
// call.
func (p *limitPlan) afterStart(pid int, usedFD bool) {
	p.release()
	if p.cg != "" && !usedFD {
		if err := writeCgroupFile(p.cg, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			for _, s := range []*LimitStatus{&p.status.CPU, &p.status.Memory} {
				if s.Requested > 0 {
					*s = LimitStatus{Requested: s.Requested, Via: ViaNone, Reason: "moving the process into its cgroup: " + err.Error()}
				}
			}
		}
	}
}

// watch is the resident-memory watchdog: until stop is closed it reads the
// resident memory of pid every watchdogInterval and kills pid's process
// group once it exceeds rssMax. It returns at once when the plan has no
// watchdog. Only pid itself is measured, not its children.
func (p *limitPlan) watch(pid int, stop <-chan struct{}) {
	if p.rssMax <= 0 {
		return
	}
	t := time.NewTicker(watchdogInterval)
	defer t.Stop()
	statm := "/proc/" + strconv.Itoa(pid) + "/statm"
	page := int64(os.Getpagesize())
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		b, err := os.ReadFile(statm)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		pages, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || pages*page <= p.rssMax {
			continue
		}
		msg := fmt.Sprintf("resident memory %d MiB exceeded the limit of %d MiB; killed by the agent's memory watchdog",
			pages*page>>20, p.rssMax>>20)
		p.overLimit.Store(&msg)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return
	}
}

// overLimitError is the watchdog's message when it killed the process, ""
// otherwise.
func (p *limitPlan) overLimitError() string {
	if m := p.overLimit.Load(); m != nil {
		return *m
	}
	return ""
}

// release closes the cgroup descriptor.
func (p *limitPlan) release() {
	if p.cgFD >= 0 {
		_ = unix.Close(p.cgFD)
		p.cgFD = -1
	}
}

// oomKilled reports whether the kernel OOM-killed a process of the cgroup
// since prepare, or the watchdog killed the process.
func (p *limitPlan) oomKilled() bool {
	return p.cg != "" && oomKills(p.cg) > p.oomBase || p.overLimit.Load() != nil
}

// killAll kills whatever is left in the cgroup (cgroup.kill, Linux 5.14+).
func (p *limitPlan) killAll() {
	if p.cg != "" {
		_ = writeCgroupFile(p.cg, "cgroup.kill", "1")
	}
}

// cleanup removes the cgroup once it is empty; a cgroup that still holds
// processes stays and is reused by the next start.
func (p *limitPlan) cleanup() {
	p.release()
	if p.cg != "" {
		_ = unix.Rmdir(p.cg)
	}
}
