package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/ota"
	"github.com/outpost-edge/outpost/internal/agent/workload"
	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/deployspec"
	"github.com/outpost-edge/outpost/protocol"
)

// workloadsFileName is the file under the data directory that keeps the
// hub's last desired workloads and the revisions given to the supervisor,
// so that a restart without the hub runs and reports the same ones.
const workloadsFileName = "workloads.json"

// servicesDir is the directory under the data directory that holds the
// service artifacts: services/NAME/VERSION/NAME.
const servicesDir = "services"

// Defaults of workloadsOptions.
const (
	defaultWorkloadsReportInterval = time.Second
	defaultWorkloadsRetryMin       = 5 * time.Second
	defaultWorkloadsRetryMax       = 5 * time.Minute
	// workloadsQueueLen is how many shadow messages (and, apart, log
	// requests) wait for Run at most.
	workloadsQueueLen = 16
)

// workloadsOptions configure a workloads reconciler.
type workloadsOptions struct {
	DeviceID string
	// DataDir is the agent's data directory (workloadsFileName and
	// servicesDir live in it).
	DataDir string
	// Address is what services get in OUTPOST_ADDRESS.
	Address string
	// Advertise is the address reported for the hub's registry.
	Advertise string
	// Supervisor runs the services; the reconciler applies the whole set.
	Supervisor *workload.Supervisor
	// Publish publishes at QoS 1 and fails while the agent is offline.
	Publish func(ctx context.Context, topic string, payload []byte) error
	// Fetch downloads and verifies the artifact name@version and returns
	// the path of the verified file, which the reconciler moves into
	// place. It is called from its own goroutine, one per artifact.
	Fetch  func(ctx context.Context, name, version string) (string, error)
	Logger *slog.Logger
	// Now stamps the reports; time.Now when nil.
	Now func() time.Time
	// ReportInterval is how often changes are reported (1s).
	ReportInterval time.Duration
	// RetryMin and RetryMax bound the wait before a failed download is
	// tried again (5s doubling up to 5m).
	RetryMin, RetryMax time.Duration
}

// workloadsFile is workloadsFileName's content.
type workloadsFile struct {
	Version int `json:"version"`
	// Desired is the hub's desired.workloads as last received.
	Desired map[string]protocol.WorkloadDesired `json:"desired"`
	// Applied is, per service, the revision given to the supervisor.
	Applied map[string]protocol.WorkloadDesired `json:"applied"`
}

// parsedSpec is a desired revision made ready for the supervisor.
type parsedSpec struct {
	spec workload.Spec
	// artifact is NAME@VERSION.
	name, version string
	err           error
}

// fetchState is one artifact's download.
type fetchState struct {
	cancel   context.CancelFunc
	running  bool
	err      string
	failures int
	next     time.Time // when a failed download may be tried again
}

// stateSince is a service's reported state and when it began.
type stateSince struct {
	state string
	since int64
}

// workloads reconciles the device's workloads named shadow with the
// supervisor: it takes desired.workloads from the hub, fetches the
// artifacts, applies the runnable set, reports reported.workloads and
// answers log requests. HandleMessage and Connected do not block; the
// rest happens in Run's goroutines.
type workloads struct {
	opts workloadsOptions
	log  *slog.Logger
	path string

	getTopic, getAccepted, getRejected, docsTopic, updateTopic, logsTopic, logsRespTopic string

	msgs    chan wlMessage
	logReqs chan []byte
	getReq  chan struct{}
	kick    chan struct{}
	started atomic.Bool
	tokens  atomic.Uint64
	fetchWG sync.WaitGroup

	mu sync.Mutex // guards the fields below
	// desired is the hub's desired.workloads; applied the revision per
	// service given to the supervisor.
	desired, applied map[string]protocol.WorkloadDesired
	// loaded is whether the file was read at start (or a hub state came).
	loaded bool
	// parsed caches parseSpec by revision.
	parsed map[string]parsedSpec
	// fetches are the downloads by artifact (NAME@VERSION).
	fetches map[string]*fetchState
	// states are the reported states by service.
	states map[string]stateSince
	// appliedKey is the encoding of the set last applied.
	appliedKey string

	// sent is the last report the hub took, nil to send all again;
	// hubReported are the services the hub's reported section holds,
	// to null the ones not desired. Only Run's goroutine uses them.
	sent        map[string]protocol.WorkloadReport
	hubReported []string
}

type wlMessage struct {
	topic   string
	payload []byte
}

// newWorkloads loads the persisted state and, if there is one, applies
// it at once, so that the services run before (and without) the hub.
func newWorkloads(opts workloadsOptions) (*workloads, error) {
	if opts.Supervisor == nil || opts.Publish == nil || opts.Fetch == nil || opts.DataDir == "" {
		return nil, errors.New("creating workloads reconciler: Supervisor, Publish, Fetch and DataDir are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReportInterval <= 0 {
		opts.ReportInterval = defaultWorkloadsReportInterval
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = defaultWorkloadsRetryMin
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(defaultWorkloadsRetryMax, opts.RetryMin)
	}
	id, ws := opts.DeviceID, protocol.WorkloadsShadow
	w := &workloads{
		opts:          opts,
		log:           opts.Logger.With("component", "workloads"),
		path:          filepath.Join(opts.DataDir, workloadsFileName),
		getTopic:      protocol.ShadowTopic(id, ws, protocol.ShadowOpGet, ""),
		getAccepted:   protocol.ShadowTopic(id, ws, protocol.ShadowOpGet, protocol.ShadowAccepted),
		getRejected:   protocol.ShadowTopic(id, ws, protocol.ShadowOpGet, protocol.ShadowRejected),
		docsTopic:     protocol.ShadowTopic(id, ws, protocol.ShadowOpUpdate, protocol.ShadowDocuments),
		updateTopic:   protocol.ShadowTopic(id, ws, protocol.ShadowOpUpdate, ""),
		logsTopic:     protocol.LogsRequestTopic(id),
		logsRespTopic: protocol.LogsResponseTopic(id),
		msgs:          make(chan wlMessage, workloadsQueueLen),
		logReqs:       make(chan []byte, workloadsQueueLen),
		getReq:        make(chan struct{}, 1),
		kick:          make(chan struct{}, 1),
		desired:       map[string]protocol.WorkloadDesired{},
		applied:       map[string]protocol.WorkloadDesired{},
		parsed:        map[string]parsedSpec{},
		fetches:       map[string]*fetchState{},
		states:        map[string]stateSince{},
	}
	w.load()
	if w.loaded {
		w.mu.Lock()
		w.plan()
		w.mu.Unlock()
	}
	return w, nil
}

// load reads the persisted state. A missing file leaves the supervisor's
// own persisted set running until the hub speaks; a bad one is logged and
// moved aside.
func (w *workloads) load() {
	b, err := os.ReadFile(w.path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var f workloadsFile
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil {
		w.log.Error("ignoring the saved workloads; moving the file aside", "file", w.path, "err", err)
		_ = os.Rename(w.path, w.path+".bad")
		return
	}
	if f.Desired != nil {
		w.desired = f.Desired
	}
	if f.Applied != nil {
		w.applied = f.Applied
	}
	w.loaded = true
	w.log.Info("running the saved workloads", "desired", len(w.desired))
}

// save persists desired and applied. Called with w.mu held.
func (w *workloads) save() {
	b, err := json.Marshal(workloadsFile{Version: 1, Desired: w.desired, Applied: w.applied})
	if err == nil {
		err = atomicfile.Write(w.path, b, 0o600)
	}
	if err != nil {
		w.log.Error("saving the workloads failed; a restart without the hub runs the previous ones", "err", err)
	}
}

// Subscriptions are the topics the reconciler needs.
func (w *workloads) Subscriptions() []string {
	return []string{w.getAccepted, w.getRejected, w.docsTopic, w.logsTopic}
}

// Handles reports whether topic is one of Subscriptions.
func (w *workloads) Handles(topic string) bool {
	return slices.Contains(w.Subscriptions(), topic)
}

// HandleMessage takes a PUBLISH on one of Subscriptions. It does not block.
func (w *workloads) HandleMessage(topic string, payload []byte) {
	if topic == w.logsTopic {
		select {
		case w.logReqs <- slices.Clone(payload):
		default:
			w.log.Warn("too many log requests waiting; dropping one")
		}
		return
	}
	select {
	case w.msgs <- wlMessage{topic: topic, payload: slices.Clone(payload)}:
	default:
		w.log.Warn("too many workloads shadow messages waiting; asking for the whole shadow instead")
		w.requestGet()
	}
}

// Connected asks the hub for the whole workloads shadow, after which
// every report is sent again. It does not block.
func (w *workloads) Connected(context.Context) { w.requestGet() }

func (w *workloads) requestGet() {
	select {
	case w.getReq <- struct{}{}:
	default:
	}
}

func (w *workloads) trigger() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *workloads) token(kind string) string {
	return "outpost-agent-workloads-" + kind + "-" + strconv.FormatUint(w.tokens.Add(1), 10)
}

// Run reconciles and reports until ctx is done, then returns nil once the
// downloads and the log responder have stopped. It may be called once.
func (w *workloads) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("workloads reconciler: Run called twice")
	}
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		w.fetchWG.Wait()
	}()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case p := <-w.logReqs:
				w.answerLogs(ctx, p)
			}
		}
	})
	t := time.NewTicker(w.opts.ReportInterval)
	defer t.Stop()
	for {
		w.reconcile(ctx)
		w.report(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-w.getReq:
			w.sent = nil
			payload, _ := json.Marshal(map[string]string{"clientToken": w.token("get")})
			if err := w.opts.Publish(ctx, w.getTopic, payload); err != nil {
				w.log.Debug("asking for the workloads shadow failed", "err", err)
			}
		case m := <-w.msgs:
			w.handle(m)
		case <-w.kick:
		case <-t.C:
		}
	}
}

// handle takes a shadow message.
func (w *workloads) handle(m wlMessage) {
	var desired map[string]any
	switch m.topic {
	case w.getAccepted:
		var doc protocol.ShadowDocument
		if err := json.Unmarshal(m.payload, &doc); err != nil {
			w.log.Warn("ignoring a workloads shadow document that does not decode", "err", err)
			return
		}
		desired, _ = doc.State["desired"].(map[string]any)
		reported, _ := doc.State["reported"].(map[string]any)
		rw, _ := reported[protocol.WorkloadsKey].(map[string]any)
		w.hubReported = slices.Collect(maps.Keys(rw))
		w.sent = nil
	case w.getRejected:
		var e protocol.ShadowError
		if err := json.Unmarshal(m.payload, &e); err != nil {
			w.log.Warn("ignoring a workloads shadow error that does not decode", "err", err)
			return
		}
		if e.Code != 404 {
			w.log.Warn("the hub refused to send the workloads shadow", "code", e.Code, "message", e.Message)
			return
		}
		// No shadow: no workloads.
		w.hubReported, w.sent = nil, nil
	case w.docsTopic:
		var docs protocol.ShadowDocumentsMessage
		if err := json.Unmarshal(m.payload, &docs); err != nil {
			w.log.Warn("ignoring a workloads shadow documents message that does not decode", "err", err)
			return
		}
		desired, _ = docs.Current.State["desired"].(map[string]any)
	default:
		return
	}
	want, bad := protocol.DecodeWorkloadsDesired(desired[protocol.WorkloadsKey])
	for _, name := range bad {
		// parseSpec reports it as an error.
		want[name] = protocol.WorkloadDesired{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.loaded && maps.Equal(want, w.desired) {
		return
	}
	w.log.Info("new desired workloads from the hub", "services", len(want))
	w.desired, w.loaded = want, true
	w.save()
}

// parse returns the supervisor spec of a desired revision, cached. Called
// with w.mu held.
func (w *workloads) parse(name string, d protocol.WorkloadDesired) parsedSpec {
	key := name + "\x00" + d.Revision
	if p, ok := w.parsed[key]; ok {
		return p
	}
	p := w.parseSpec(name, d)
	w.parsed[key] = p
	return p
}

func (w *workloads) parseSpec(name string, d protocol.WorkloadDesired) parsedSpec {
	if d.Spec == "" {
		return parsedSpec{err: errors.New("the desired entry has no spec")}
	}
	ds, err := deployspec.Parse([]byte(d.Spec))
	if err != nil {
		return parsedSpec{err: fmt.Errorf("invalid spec: %w", err)}
	}
	if rev := ds.Revision(); rev != d.Revision {
		return parsedSpec{err: fmt.Errorf("the spec's revision is %s, not the desired revision %s", rev, d.Revision)}
	}
	if ds.Name != name {
		return parsedSpec{err: fmt.Errorf("the spec is named %q, not %q", ds.Name, name)}
	}
	p := parsedSpec{name: ds.ArtifactName(), version: ds.ArtifactVersion()}
	p.spec = w.toWorkload(ds, w.artifactPath(p.name, p.version))
	if err := p.spec.Validate(); err != nil {
		return parsedSpec{err: fmt.Errorf("the spec cannot run on this device: %w", err)}
	}
	return p
}

// artifactPath is where artifact name@version lives.
func (w *workloads) artifactPath(name, version string) string {
	return filepath.Join(w.opts.DataDir, servicesDir, name, version, name)
}

// toWorkload maps a deployment spec to the supervisor's.
func (w *workloads) toWorkload(ds deployspec.Spec, binary string) workload.Spec {
	env := make(map[string]string, len(ds.Env)+3)
	maps.Copy(env, ds.Env)
	ports := make([]string, 0, len(ds.Ports))
	for _, p := range slices.Sorted(slices.Values(ds.Ports)) {
		ports = append(ports, strconv.Itoa(p))
	}
	env["OUTPOST_DEVICE_ID"] = w.opts.DeviceID
	env["OUTPOST_ADDRESS"] = w.opts.Address
	env["OUTPOST_PORTS"] = strings.Join(ports, ",")
	s := workload.Spec{
		Name:    ds.Name,
		Version: ds.ArtifactVersion(),
		Binary:  binary,
		Args:    ds.Args,
		Env:     env,
		User:    ds.User,
		Resources: workload.Resources{
			CPUMilli:    int64(ds.Resources.CPU),
			MemoryBytes: int64(ds.Resources.Memory),
		},
		Restart: workload.Restart{
			Policy:     workload.RestartPolicy(ds.Restart.Policy),
			BackoffMin: ds.Restart.BackoffMin.D(),
			BackoffMax: ds.Restart.BackoffMax.D(),
		},
	}
	if h := ds.Health; h != nil {
		hc := &workload.HealthCheck{
			Interval:         h.Interval.D(),
			Timeout:          h.Timeout.D(),
			FailureThreshold: h.FailureThreshold,
		}
		switch {
		case h.HTTP != nil:
			hc.Type, hc.Port, hc.Path = workload.HealthHTTP, h.HTTP.Port, h.HTTP.Path
		case h.TCP != nil:
			hc.Type, hc.Port = workload.HealthTCP, h.TCP.Port
		case h.Exec != nil:
			hc.Type, hc.Command = workload.HealthExec, h.Exec.Command
		}
		s.Health = hc
	}
	return s
}

// present reports whether an executable artifact is at path.
func present(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// plan works out the runnable set and applies it: for each desired
// service its revision when the artifact is on disk, else the revision
// applied before, if any. It returns the artifacts to fetch. Called with
// w.mu held.
func (w *workloads) plan() map[string]parsedSpec {
	var specs []workload.Spec
	applied := map[string]protocol.WorkloadDesired{}
	need := map[string]parsedSpec{}
	for name, d := range w.desired {
		p := w.parse(name, d)
		if p.err == nil {
			if present(p.spec.Binary) {
				specs = append(specs, p.spec)
				applied[name] = d
				continue
			}
			need[p.name+"@"+p.version] = p
		}
		// The previous revision runs until the new one can.
		if old, ok := w.applied[name]; ok && old.Revision != d.Revision {
			if po := w.parse(name, old); po.err == nil && present(po.spec.Binary) {
				specs = append(specs, po.spec)
				applied[name] = old
			}
		}
	}
	// Drop cached parses no longer in use.
	for key := range w.parsed {
		name, rev, _ := strings.Cut(key, "\x00")
		if w.desired[name].Revision != rev && w.applied[name].Revision != rev {
			delete(w.parsed, key)
		}
	}
	slices.SortFunc(specs, func(a, b workload.Spec) int { return strings.Compare(a.Name, b.Name) })
	key, _ := json.Marshal(specs)
	if string(key) == w.appliedKey && maps.Equal(applied, w.applied) {
		return need
	}
	if err := w.opts.Supervisor.Apply(specs); err != nil {
		if !errors.Is(err, workload.ErrStopped) {
			w.log.Error("applying the workloads failed", "err", err)
		}
		return need
	}
	w.appliedKey = string(key)
	if !maps.Equal(applied, w.applied) {
		w.applied = applied
		w.save()
		w.prune(need)
	}
	return need
}

// keptPrevious is how many artifact versions per service beyond those in
// use stay on disk: the last one, so that a rollback starts at once.
const keptPrevious = 1

// prune deletes downloaded artifacts nothing needs: of each artifact, the
// versions that are neither desired, nor running, nor being fetched,
// beyond the keptPrevious most recently downloaded. A service removed
// from the device keeps its last version too, so that deploying it again
// (or a hub that briefly lost the shadow) downloads nothing. Called with
// w.mu held.
func (w *workloads) prune(need map[string]parsedSpec) {
	inUse := map[string]map[string]bool{}
	use := func(name, version string) {
		if inUse[name] == nil {
			inUse[name] = map[string]bool{}
		}
		inUse[name][version] = true
	}
	for name, d := range w.desired {
		if p := w.parse(name, d); p.err == nil {
			use(p.name, p.version)
		}
	}
	for name, d := range w.applied {
		if p := w.parse(name, d); p.err == nil {
			use(p.name, p.version)
		}
	}
	for _, p := range need {
		use(p.name, p.version)
	}
	root := filepath.Join(w.opts.DataDir, servicesDir)
	names, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, n := range names {
		dir := filepath.Join(root, n.Name())
		keep := inUse[n.Name()]
		versions, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		type old struct {
			path string
			mod  time.Time
		}
		var olds []old
		for _, v := range versions {
			if keep[v.Name()] {
				continue
			}
			fi, err := v.Info()
			if err != nil {
				continue
			}
			olds = append(olds, old{filepath.Join(dir, v.Name()), fi.ModTime()})
		}
		slices.SortFunc(olds, func(a, b old) int { return b.mod.Compare(a.mod) })
		for i, o := range olds {
			if i >= keptPrevious {
				w.removeArtifact(o.path)
			}
		}
	}
}

func (w *workloads) removeArtifact(path string) {
	if err := os.RemoveAll(path); err != nil {
		w.log.Warn("removing an unused service artifact failed", "path", path, "err", err)
		return
	}
	w.log.Info("removed an unused service artifact", "path", path)
}

// reconcile applies the runnable set and starts, retries and cancels
// downloads.
func (w *workloads) reconcile(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.loaded {
		return
	}
	need := w.plan()
	now := w.opts.Now()
	for key, fs := range w.fetches {
		if _, ok := need[key]; !ok {
			if fs.cancel != nil {
				fs.cancel()
			}
			delete(w.fetches, key)
		}
	}
	for key, p := range need {
		fs := w.fetches[key]
		if fs == nil {
			fs = &fetchState{}
			w.fetches[key] = fs
		}
		if fs.running || now.Before(fs.next) || ctx.Err() != nil {
			continue
		}
		fctx, cancel := context.WithCancel(ctx)
		fs.running, fs.cancel = true, cancel
		w.log.Info("downloading a service artifact", "artifact", key)
		w.fetchWG.Go(func() {
			defer cancel()
			err := w.download(fctx, p.name, p.version, p.spec.Binary)
			w.mu.Lock()
			fs.running = false
			switch {
			case err == nil:
				fs.err, fs.failures = "", 0
			case fctx.Err() == nil:
				fs.failures++
				wait := w.opts.RetryMin << min(fs.failures-1, 20)
				if wait > w.opts.RetryMax || wait <= 0 {
					wait = w.opts.RetryMax
				}
				fs.err, fs.next = err.Error(), w.opts.Now().Add(wait)
				w.log.Warn("downloading a service artifact failed; retrying later", "artifact", key, "retry_in", wait, "err", err)
			}
			w.mu.Unlock()
			w.trigger()
		})
	}
}

// download fetches name@version and moves it to dest atomically.
func (w *workloads) download(ctx context.Context, name, version, dest string) error {
	src, err := w.opts.Fetch(ctx, name, version)
	if err != nil {
		return err
	}
	dir := filepath.Dir(dest)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp := dest + ".tmp"
	if err := os.Rename(src, tmp); err != nil {
		// Another file system: copy.
		if err := copyFile(src, tmp); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("installing the artifact: %w", err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("installing the artifact: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("installing the artifact: %w", err)
	}
	return atomicfile.SyncDir(dir)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// reports builds the report of every desired service.
func (w *workloads) reports() map[string]protocol.WorkloadReport {
	status := map[string]workload.Status{}
	for _, st := range w.opts.Supervisor.Status() {
		status[st.Name] = st
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := protocol.UnixMs(w.opts.Now())
	out := make(map[string]protocol.WorkloadReport, len(w.desired))
	for name, d := range w.desired {
		r := protocol.WorkloadReport{Revision: d.Revision, Address: w.opts.Advertise}
		run, running := w.applied[name]
		st, hasSt := status[name]
		if running && hasSt {
			r.Version = st.Version
		}
		p := w.parse(name, d)
		var fs *fetchState
		if p.err == nil {
			fs = w.fetches[p.name+"@"+p.version]
		}
		switch {
		case p.err != nil:
			r.State, r.Error = protocol.WorkloadError, p.err.Error()
		case running && run.Revision == d.Revision:
			r.State = protocol.WorkloadPending
			if hasSt {
				fillReport(&r, st)
			}
		case fs != nil && fs.err != "" && !fs.running:
			r.State, r.Error = protocol.WorkloadError, "downloading "+p.name+"@"+p.version+": "+fs.err
		default:
			r.State = protocol.WorkloadDownloading
		}
		ss, ok := w.states[name]
		if !ok || ss.state != r.State {
			ss = stateSince{state: r.State, since: now}
			w.states[name] = ss
		}
		r.Since = ss.since
		out[name] = r
	}
	for name := range w.states {
		if _, ok := w.desired[name]; !ok {
			delete(w.states, name)
		}
	}
	return out
}

// fillReport copies a running revision's status into r.
func fillReport(r *protocol.WorkloadReport, st workload.Status) {
	r.State, r.Version, r.Healthy, r.Restarts = string(st.State), st.Version, st.Healthy, st.Restarts
	r.Limits = limitsText(st.Limits)
	r.Error = st.HealthError
	if e := st.LastExit; e != nil {
		r.LastExit = &protocol.WorkloadExit{Code: e.Code, Signal: e.Signal, Reason: e.Reason, Error: e.Error, Time: protocol.UnixMs(e.Time)}
		if st.State == workload.StateFailed && r.Error == "" {
			r.Error = e.Error
		}
	}
}

// limitsText says in short how the requested limits are enforced.
func limitsText(l workload.Limits) string {
	type res struct {
		name string
		ls   workload.LimitStatus
	}
	var parts []string
	allV2 := true
	for _, x := range []res{{"memory", l.Memory}, {"cpu", l.CPU}} {
		if x.ls.Requested == 0 {
			continue
		}
		switch {
		case x.ls.Enforced && x.ls.Via == workload.ViaCgroupV2:
			parts = append(parts, x.name+": cgroup v2")
			continue
		case x.ls.Enforced && x.ls.Via == workload.ViaWatchdog:
			parts = append(parts, x.name+": agent watchdog (no cgroup v2)")
		case x.ls.Enforced:
			parts = append(parts, x.name+": "+x.ls.Via)
		default:
			parts = append(parts, x.name+": not enforced: "+x.ls.Reason)
		}
		allV2 = false
	}
	if len(parts) == 0 {
		return ""
	}
	if allV2 {
		return workload.ViaCgroupV2
	}
	return strings.Join(parts, "; ")
}

// report publishes the reports that changed since the last one sent.
func (w *workloads) report(ctx context.Context) {
	w.mu.Lock()
	loaded := w.loaded
	w.mu.Unlock()
	if !loaded {
		return
	}
	cur := w.reports()
	patch := map[string]any{}
	for name, r := range cur {
		if prev, ok := w.sent[name]; !ok || !reflect.DeepEqual(prev, r) {
			patch[name] = r
		}
	}
	for name := range w.sent {
		if _, ok := cur[name]; !ok {
			patch[name] = nil
		}
	}
	for _, name := range w.hubReported {
		if _, ok := cur[name]; !ok {
			patch[name] = nil
		}
	}
	if len(patch) == 0 {
		return
	}
	payload, err := json.Marshal(map[string]any{
		"state":       map[string]any{"reported": map[string]any{protocol.WorkloadsKey: patch}},
		"clientToken": w.token("report"),
	})
	if err != nil {
		w.log.Error("encoding the workloads report failed", "err", err)
		return
	}
	if err := w.opts.Publish(ctx, w.updateTopic, payload); err != nil {
		// Tried again at the next tick.
		w.log.Debug("reporting the workloads failed", "err", err)
		return
	}
	w.sent, w.hubReported = cur, nil
}

// answerLogs answers one LogsRequest.
func (w *workloads) answerLogs(ctx context.Context, payload []byte) {
	var req protocol.LogsRequest
	if err := json.Unmarshal(payload, &req); err != nil || !protocol.ValidLogsRequestID(req.ID) {
		w.log.Warn("ignoring a log request that does not decode or has no valid id", "err", err)
		return
	}
	resp := w.logs(req)
	b, err := json.Marshal(resp)
	if err != nil {
		w.log.Error("encoding a log response failed", "err", err)
		return
	}
	if err := w.opts.Publish(ctx, w.logsRespTopic, b); err != nil {
		w.log.Debug("answering a log request failed", "id", req.ID, "err", err)
	}
}

// logs builds the answer to req, within MaxLogLines lines and
// MaxLogsResponseBytes bytes (the oldest lines go first).
func (w *workloads) logs(req protocol.LogsRequest) protocol.LogsResponse {
	resp := protocol.LogsResponse{ID: req.ID, Service: req.Service, Lines: []protocol.LogLine{}}
	tail := req.Tail
	if tail <= 0 || tail > protocol.MaxLogLines {
		tail = protocol.MaxLogLines
	}
	lines, last, ok := w.opts.Supervisor.LogsSince(req.Service, req.After, tail)
	if !ok {
		w.mu.Lock()
		_, desired := w.desired[req.Service]
		w.mu.Unlock()
		if !desired {
			resp.Error = "no service " + req.Service + " on this device"
		}
		return resp
	}
	resp.Last = last
	base, _ := json.Marshal(resp)
	total := len(base)
	sizes := make([]int, len(lines))
	for i, l := range lines {
		ll := protocol.LogLine{Seq: l.Seq, Time: protocol.UnixMs(l.Time), Line: l.Line}
		b, _ := json.Marshal(ll)
		sizes[i] = len(b) + 1 // and a comma
		total += sizes[i]
		resp.Lines = append(resp.Lines, ll)
	}
	drop := 0
	for total > protocol.MaxLogsResponseBytes && drop < len(sizes) {
		total -= sizes[drop]
		drop++
	}
	resp.Lines = resp.Lines[drop:]
	return resp
}

// fetchService downloads the service artifact name@version through the
// OTA client (TUF-verified, resumable) and returns the verified file's
// path. Any version may come in: going back to an older one is a normal
// rollback of a deployment. The OTA client's installed registry belongs to
// the file handler and is not touched.
func (a *Agent) fetchService(ctx context.Context, name, version string) (string, error) {
	c, err := a.otaClient(ctx)
	if err != nil {
		return "", err
	}
	if err := c.Refresh(ctx); err != nil {
		return "", withReason(err)
	}
	t, err := c.Lookup(name, version, platform(), ota.AllowDowngrade())
	if err != nil {
		return "", withReason(err)
	}
	if t.Meta.Type != ota.TypeService {
		return "", fmt.Errorf("artifact %s@%s is of type %q, not %q", name, version, t.Meta.Type, ota.TypeService)
	}
	path, _, err := c.Download(ctx, t, nil)
	if err != nil {
		return "", withReason(err)
	}
	return path, nil
}
