package workload

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// Defaults of Options.
const (
	DefaultCgroupRoot   = "/sys/fs/cgroup"
	DefaultStopGrace    = 10 * time.Second
	DefaultLogLines     = 1000
	DefaultLogFileBytes = 1 << 20
	DefaultLogFileKeep  = 3
	// maxDesiredBytes bounds desired.json when it is read back.
	maxDesiredBytes = 4 << 20
)

// Options configure a Supervisor. Zero fields take the defaults.
type Options struct {
	// DataDir is the agent's data directory; the supervisor uses
	// DataDir/workloads. Required.
	DataDir string
	// Logger receives the supervisor's own events; slog.Default when nil.
	Logger *slog.Logger
	// Now stamps statuses and log file lines; time.Now when nil. Timers
	// (backoff, health checks, grace) use the real clock.
	Now func() time.Time
	// CgroupRoot is where the cgroup v2 hierarchy is mounted
	// (DefaultCgroupRoot); tests point it at a fake tree.
	CgroupRoot string
	// StopGrace is how long a process has to exit after SIGTERM before its
	// process group gets SIGKILL (DefaultStopGrace).
	StopGrace time.Duration
	// LogLines is the size of each workload's in-memory log ring
	// (DefaultLogLines).
	LogLines int
	// LogFileBytes is the size at which a log file is rotated
	// (DefaultLogFileBytes); LogFileKeep rotated files are kept
	// (DefaultLogFileKeep).
	LogFileBytes int64
	LogFileKeep  int
	// Address is the IP address http and tcp health checks connect to
	// (DefaultAddress): the address the workloads are told to listen on.
	Address string
}

// DefaultAddress is the default Options.Address.
const DefaultAddress = "127.0.0.1"

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CgroupRoot == "" {
		o.CgroupRoot = DefaultCgroupRoot
	}
	if o.StopGrace <= 0 {
		o.StopGrace = DefaultStopGrace
	}
	if o.LogLines <= 0 {
		o.LogLines = DefaultLogLines
	}
	if o.LogFileBytes <= 0 {
		o.LogFileBytes = DefaultLogFileBytes
	}
	if o.LogFileKeep <= 0 {
		o.LogFileKeep = DefaultLogFileKeep
	}
	if o.Address == "" {
		o.Address = DefaultAddress
	}
	return o
}

// Supervisor runs the desired set of workloads. Apply, Status and Logs are
// safe for concurrent use, before, during and after Run.
type Supervisor struct {
	opts    Options
	log     *slog.Logger
	dir     string // DataDir/workloads
	limiter *limiter
	checker *checker
	kick    chan struct{} // wakes Run after Apply; capacity 1

	mu sync.Mutex // guards the fields below
	// desired is the last applied (or loaded) set, sorted by name.
	desired []Spec
	ran     bool // Run was called
	stopped bool // Run returned
	// units are the current workloads by name; stopping holds removed
	// ones until their process has exited.
	units    map[string]*unit
	stopping map[*unit]bool
	// logs are the log sinks by name; they outlive units so a restart or
	// replacement keeps the earlier output.
	logs map[string]*logSink
	// seqs keeps the last log Seq of a workload whose sink was dropped, so
	// that Seq keeps growing when the name comes back.
	seqs map[string]uint64
}

// New returns a Supervisor that will run the desired set last persisted
// under opts.DataDir, until Apply replaces it. It probes how resource
// limits can be enforced (and may move the agent into a leaf cgroup to
// enable cgroup v2 controllers for its children). An unreadable desired
// file is logged and renamed aside, not returned: the agent must start.
func New(opts Options) (*Supervisor, error) {
	if opts.DataDir == "" {
		return nil, errors.New("workload supervisor: DataDir is required")
	}
	opts = opts.withDefaults()
	s := &Supervisor{
		opts:     opts,
		log:      opts.Logger.With("component", "workload"),
		dir:      filepath.Join(opts.DataDir, "workloads"),
		limiter:  newLimiter(opts.CgroupRoot),
		checker:  newChecker(opts.Address),
		kick:     make(chan struct{}, 1),
		units:    make(map[string]*unit),
		stopping: make(map[*unit]bool),
		logs:     make(map[string]*logSink),
		seqs:     make(map[string]uint64),
	}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating %s: %w", s.dir, err)
	}
	if s.limiter.noV2 != "" {
		s.log.Info("resource limits: cgroup v2 not usable; memory via the agent's watchdog, cpu not enforced", "reason", s.limiter.noV2)
	} else {
		s.log.Info("resource limits: cgroup v2", "cgroup", s.limiter.base)
	}
	s.desired = s.loadDesired()
	return s, nil
}

// desiredFile is the persisted form of the desired set.
type desiredFile struct {
	Version   int    `json:"version"`
	Workloads []Spec `json:"workloads"`
}

func (s *Supervisor) desiredPath() string { return filepath.Join(s.dir, "desired.json") }

func (s *Supervisor) loadDesired() []Spec {
	path := s.desiredPath()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var df desiredFile
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(f, maxDesiredBytes+1))
		_ = f.Close()
		switch {
		case err != nil:
		case len(b) > maxDesiredBytes:
			err = fmt.Errorf("larger than %d bytes", maxDesiredBytes)
		default:
			err = json.Unmarshal(b, &df)
		}
	}
	if err == nil {
		err = validateSet(df.Workloads)
	}
	if err != nil {
		s.log.Error("ignoring the persisted workloads; moving the file aside", "file", path, "err", err)
		_ = os.Rename(path, path+".bad")
		return nil
	}
	slices.SortFunc(df.Workloads, func(a, b Spec) int { return cmp.Compare(a.Name, b.Name) })
	s.log.Info("loaded persisted workloads", "count", len(df.Workloads))
	return df.Workloads
}

// Apply makes specs the desired set: workloads not running yet are
// started, those missing from specs are stopped, those whose Spec changed
// in any way are replaced (the old process is stopped, then the new one
// started). Invalid specs reject the whole set, with every problem
// listed. The set is persisted atomically before it takes effect; if that
// fails nothing changes. Apply does not wait for processes: Status shows
// the progress.
func (s *Supervisor) Apply(specs []Spec) error {
	if err := validateSet(specs); err != nil {
		return err
	}
	specs = slices.Clone(specs)
	slices.SortFunc(specs, func(a, b Spec) int { return cmp.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(desiredFile{Version: 1, Workloads: specs}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding desired workloads: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if err := atomicfile.Write(s.desiredPath(), b, 0o600); err != nil {
		return fmt.Errorf("persisting desired workloads: %w", err)
	}
	s.desired = specs
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// Run starts the desired workloads and keeps them in line with Apply until
// ctx ends; then it stops every workload (SIGTERM to its process group,
// SIGKILL after Options.StopGrace) and returns nil once all have exited.
// A Supervisor runs once.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return ErrRunning
	}
	s.ran = true
	s.mu.Unlock()

	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		s.checker.close()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stopped = true
		for _, l := range s.logs {
			l.close()
		}
	}()
	for {
		s.reconcile(ctx, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		}
	}
}

// reconcile starts, updates and removes units to match s.desired.
func (s *Supervisor) reconcile(ctx context.Context, wg *sync.WaitGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]bool, len(s.desired))
	for _, spec := range s.desired {
		want[spec.Name] = true
		if u := s.units[spec.Name]; u != nil {
			u.update(spec)
			continue
		}
		var prev *unit
		for old := range s.stopping {
			if old.name == spec.Name {
				prev = old
			}
		}
		u := s.newUnit(ctx, spec, prev)
		s.units[spec.Name] = u
		wg.Go(func() {
			u.run()
			s.forget(u)
		})
	}
	for name, u := range s.units {
		if !want[name] {
			delete(s.units, name)
			s.stopping[u] = true
			u.remove()
		}
	}
}

// forget drops u once its goroutine has finished.
func (s *Supervisor) forget(u *unit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.stopping, u)
	if s.units[u.name] == u {
		// Run is ending; keep u so Status reports it stopped.
		return
	}
	if s.units[u.name] == nil {
		if l := s.logs[u.name]; l != nil {
			l.close()
			s.seqs[u.name] = l.lastSeq()
			delete(s.logs, u.name)
		}
	}
}

// sink returns the log sink of name, creating it. Called with s.mu held.
func (s *Supervisor) sink(name string) *logSink {
	if l := s.logs[name]; l != nil {
		return l
	}
	f := &rotatingFile{path: filepath.Join(s.dir, name, "log"), maxBytes: s.opts.LogFileBytes, keep: s.opts.LogFileKeep}
	l := newLogSink(s.opts.LogLines, s.seqs[name], f, s.opts.Now, s.log.With("workload", name))
	s.logs[name] = l
	return l
}

// Status returns every workload's status, sorted by name. Before Run it
// lists nothing; a removed workload is listed (stopping) until its
// process has exited.
func (s *Supervisor) Status() []Status {
	type entry struct {
		u       *unit
		want    []byte // specKey of the desired Spec of a current unit
		version string
	}
	s.mu.Lock()
	want := make(map[string]Spec, len(s.desired))
	for _, sp := range s.desired {
		want[sp.Name] = sp
	}
	units := make([]entry, 0, len(s.units)+len(s.stopping))
	for _, u := range s.units {
		e := entry{u: u}
		if sp, ok := want[u.name]; ok {
			e.want, e.version = specKey(sp), sp.Version
		}
		units = append(units, e)
	}
	for u := range s.stopping {
		if s.units[u.name] == nil {
			units = append(units, entry{u: u})
		}
	}
	s.mu.Unlock()
	out := make([]Status, 0, len(units))
	for _, e := range units {
		out = append(out, e.u.status(e.want, e.version))
	}
	slices.SortFunc(out, func(a, b Status) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Logs returns the last tail lines (all kept lines when tail <= 0) of the
// workload's stdout and stderr, interleaved as written, oldest first; nil
// for an unknown workload.
func (s *Supervisor) Logs(name string, tail int) []string {
	s.mu.Lock()
	l := s.logs[name]
	s.mu.Unlock()
	if l == nil {
		return nil
	}
	return l.tail(tail)
}

// LogsSince returns the last tail lines (all kept lines when tail <= 0)
// of the workload's output whose Seq is above after, oldest first, and
// the Seq of the newest line kept (0 when none). ok is false for a
// workload the Supervisor does not know (never applied, or removed and
// stopped).
func (s *Supervisor) LogsSince(name string, after uint64, tail int) (lines []LogLine, last uint64, ok bool) {
	s.mu.Lock()
	l := s.logs[name]
	s.mu.Unlock()
	if l == nil {
		return nil, 0, false
	}
	lines, last = l.linesSince(after, tail)
	return lines, last, true
}
