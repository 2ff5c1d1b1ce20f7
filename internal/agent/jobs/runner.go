package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/protocol"
)

// Transport publishes a request to the hub (QoS 1). It fails while the
// agent is not connected; the runner then tries again after the next
// Connected. It may block until the broker acknowledges.
type Transport interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Job is a job execution handed to a Handler.
type Job struct {
	ID string
	// Type is the document's "type" field, which chose the handler.
	Type string
	// Document is the whole job document.
	Document json.RawMessage
	// Resumed is true when the handler runs the execution again after the
	// agent stopped while it ran (only for Resumable handlers).
	Resumed bool
}

// Handler runs jobs of one type. Run is called from a goroutine of its
// own, one job at a time; it must return soon after ctx is done (the hub
// canceled or timed out the job, or the agent is stopping). progress
// reports the stage the job is in and how far it got (0–100); the runner
// throttles what it sends to the hub, so it may be called often. The
// returned details (at most protocol.MaxJobStatusDetails keys, fewer
// beside the runner's own) go into the final statusDetails. An error whose
// chain has a Reasoner gives the failure its reason code.
type Handler interface {
	Run(ctx context.Context, job Job, progress func(stage string, percent int)) (details map[string]string, err error)
}

// Resumable is implemented by a Handler whose jobs may run again from the
// start after the agent stopped while one ran (they are idempotent). The
// runner re-runs such a job after a restart instead of reporting it FAILED
// with reason "interrupted".
type Resumable interface {
	Resumable() bool
}

// Reasoner is implemented by errors that carry a stable reason code for
// the statusDetails "reason" of a FAILED execution (for example
// "checksum_mismatch"); other errors give the reason "error".
type Reasoner interface {
	Reason() string
}

// Reason codes the runner itself reports in statusDetails["reason"].
const (
	ReasonUnsupportedType = "unsupported_type"
	ReasonInterrupted     = "interrupted"
	ReasonError           = "error"
)

// Stages the runner itself reports in statusDetails["stage"].
const (
	StageStarted   = "started"
	StageResumed   = "resumed"
	StageCommitted = "committed"
)

// Options configure a Runner.
type Options struct {
	// DeviceID is the agent's device id (the thing name).
	DeviceID string
	// DataDir is the agent's data directory; the runner keeps its state
	// in DataDir/jobs/current.json.
	DataDir string
	// Transport publishes the runner's requests.
	Transport Transport
	// Handlers map a job document "type" to its handler.
	Handlers map[string]Handler
	// ProgressInterval and ProgressStep throttle progress updates: one is
	// sent when the stage changed, when the percentage moved by at least
	// ProgressStep since the last one sent, or when ProgressInterval has
	// passed since then. Zero: 1s and 10.
	ProgressInterval time.Duration
	ProgressStep     int
	// Now is the clock for the throttling; nil is time.Now.
	Now func() time.Time
	// Logger receives the runner's logs; nil discards them.
	Logger *slog.Logger
}

// queueLen is how many incoming messages wait for Run at most; when more
// arrive the runner asks for the next execution instead.
const queueLen = 64

// maxMessageLen is the longest statusDetails "message" the runner sends.
const maxMessageLen = 256

type message struct {
	topic   string
	payload []byte
}

// result is what a handler returned.
type result struct {
	details map[string]string
	err     error
}

// progressReport is the latest progress worth sending.
type progressReport struct {
	jobID   string
	stage   string
	percent int
}

// active is the handler run in progress.
type active struct {
	jobID  string
	cancel context.CancelFunc
	done   chan result
	// stopped: the hub has finished the execution (canceled, timed out);
	// the result is dropped.
	stopped bool
	// stage is the last stage the handler reported.
	stage string
}

// Runner runs the device's job executions one at a time, in the order
// the hub names them in notify-next. HandleMessage and Connected may be
// called from any goroutine; everything else happens in Run's goroutine.
type Runner struct {
	opts   Options
	log    *slog.Logger
	path   string
	prefix string

	msgs      chan message
	connected chan struct{}
	progress  chan struct{}
	started   atomic.Bool
	tokens    atomic.Uint64

	progMu sync.Mutex // guards prog, lastSent, lastSentAt, progPending, latest
	// prog is the progress to send next; lastSent what was sent last;
	// latest what the handler reported last, sent or not.
	prog, lastSent, latest progressReport
	lastSentAt             time.Time
	progPending            bool

	// The fields below are used by Run's goroutine only.
	rec *record // the execution in hand, as saved
	run *active
	// pending is a progress update that could not be sent; the final
	// update is resent from rec.Final.
	pending *update
	// after is the execution to start once the stopped run returned.
	after *protocol.JobExecution
	// waitAfter: after is meaningful (nil means nothing pending).
	waitAfter bool
	// recent are the ids of the executions the runner cleared last, so
	// that a stale answer naming one does not run it again.
	recent []string
}

// maxRecent is how many cleared execution ids the runner remembers.
const maxRecent = 16

// New returns a Runner; nothing happens until Run.
func New(opts Options) (*Runner, error) {
	var errs []error
	if err := protocol.ValidDeviceID(opts.DeviceID); err != nil {
		errs = append(errs, err)
	}
	if opts.DataDir == "" {
		errs = append(errs, errors.New("no data directory"))
	}
	if opts.Transport == nil {
		errs = append(errs, errors.New("no transport"))
	}
	for typ, h := range opts.Handlers {
		if typ == "" || h == nil {
			errs = append(errs, fmt.Errorf("handler %q: empty type or nil handler", typ))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating jobs runner: %w", err)
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = time.Second
	}
	if opts.ProgressStep <= 0 {
		opts.ProgressStep = 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{
		opts:      opts,
		log:       opts.Logger.With("component", "jobs"),
		path:      filepath.Join(opts.DataDir, Dir, FileName),
		prefix:    protocol.JobsTopicPrefix(opts.DeviceID),
		msgs:      make(chan message, queueLen),
		connected: make(chan struct{}, 1),
		progress:  make(chan struct{}, 1),
	}, nil
}

// Subscriptions are the topic filters the runner needs the uplink to
// subscribe to: notify-next and the answers to its get and update
// requests.
func (r *Runner) Subscriptions() []string {
	return []string{
		protocol.JobsNotifyNextTopic(r.opts.DeviceID),
		r.prefix + "/+/" + protocol.JobsOpGet + "/+",
		r.prefix + "/+/" + protocol.JobsOpUpdate + "/+",
	}
}

// HandleMessage takes a PUBLISH that arrived on one of Subscriptions. It
// does not block: it may be called from the MQTT client's goroutine.
func (r *Runner) HandleMessage(topic string, payload []byte) {
	select {
	case r.msgs <- message{topic: topic, payload: slices.Clone(payload)}:
	default:
		r.log.Warn("too many jobs messages waiting; asking for the next execution instead")
		r.Connected(context.Background())
	}
}

// Connected tells the runner that a connection is up and subscribed: it
// sends the updates that could not be sent and asks the hub for the next
// execution. It does not block.
func (r *Runner) Connected(context.Context) {
	select {
	case r.connected <- struct{}{}:
	default:
	}
}

// Run runs job executions until ctx is done, then stops the handler in
// progress, waits for it and returns nil. It may be called once. A
// handler stopped this way leaves current.json behind: the next Run
// resumes it or reports it interrupted.
func (r *Runner) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	r.recover(ctx)
	for {
		var done chan result
		if r.run != nil {
			done = r.run.done
		}
		select {
		case <-ctx.Done():
			r.shutdown()
			return nil
		case <-r.connected:
			r.flush(ctx)
			r.askNext(ctx)
		case m := <-r.msgs:
			r.handle(ctx, m)
		case <-r.progress:
			r.sendProgress(ctx)
		case res := <-done:
			r.finished(ctx, res)
		}
	}
}

// recover deals with an execution left in current.json by an earlier run.
func (r *Runner) recover(ctx context.Context) {
	rec, err := loadRecord(r.path)
	if err != nil {
		r.log.Error("ignoring the saved job state", "err", err)
		_ = removeRecord(r.path)
		return
	}
	if rec == nil {
		return
	}
	r.rec = rec
	if rec.Final != nil {
		r.log.Info("reporting the outcome of a job finished before the restart", "job", rec.JobID, "status", rec.Final.Status)
		r.sendFinal(ctx)
		return
	}
	typ := protocol.JobDocumentType(rec.Document)
	h := r.opts.Handlers[typ]
	if h != nil && resumable(h) {
		r.log.Info("running a job again that was interrupted by a restart", "job", rec.JobID, "type", typ)
		r.start(ctx, rec.JobID, rec.Document, rec.Version, true)
		return
	}
	r.log.Warn("a job was interrupted by a restart", "job", rec.JobID, "type", typ)
	r.finish(ctx, protocol.JobFailed, map[string]string{
		"stage": "interrupted", "reason": ReasonInterrupted, "message": "the agent stopped while the job ran",
	})
}

func resumable(h Handler) bool {
	res, ok := h.(Resumable)
	return ok && res.Resumable()
}

func (r *Runner) shutdown() {
	if r.run == nil {
		return
	}
	r.run.cancel()
	res := <-r.run.done
	if res.err == nil && !r.run.stopped && r.rec != nil {
		// It finished anyway: keep the outcome for the next start.
		r.rec.Final = &update{Status: protocol.JobSucceeded, Details: successDetails(res.details)}
		if err := saveRecord(r.path, r.rec); err != nil {
			r.log.Error("saving the job outcome", "job", r.rec.JobID, "err", err)
		}
	}
	r.run = nil
}

func (r *Runner) token() string {
	return "outpost-agent-jobs-" + strconv.FormatUint(r.tokens.Add(1), 10)
}

func (r *Runner) askNext(ctx context.Context) {
	payload, _ := json.Marshal(protocol.JobsGetRequest{ClientToken: r.token()})
	if err := r.opts.Transport.Publish(ctx, protocol.JobsTopic(r.opts.DeviceID, protocol.JobsNext, protocol.JobsOpGet, ""), payload); err != nil {
		r.log.Debug("asking for the next job failed; the next connection asks again", "err", err)
	}
}

// publishUpdate sends an update of the execution in hand.
func (r *Runner) publishUpdate(ctx context.Context, jobID string, u update) error {
	payload, err := json.Marshal(protocol.JobsUpdateRequest{
		Status: u.Status, StatusDetails: u.Details, IncludeJobExecutionState: true, ClientToken: r.token(),
	})
	if err != nil {
		return err
	}
	return r.opts.Transport.Publish(ctx, protocol.JobsTopic(r.opts.DeviceID, jobID, protocol.JobsOpUpdate, ""), payload)
}

// flush resends what could not be sent: the outcome, else the latest
// progress.
func (r *Runner) flush(ctx context.Context) {
	switch {
	case r.rec != nil && r.rec.Final != nil:
		r.sendFinal(ctx)
	case r.pending != nil && r.run != nil && !r.run.stopped:
		u := *r.pending
		r.pending = nil
		r.sendUpdate(ctx, r.run.jobID, u)
	}
}

// sendUpdate sends a progress update, keeping it for the next connection
// if that fails.
func (r *Runner) sendUpdate(ctx context.Context, jobID string, u update) {
	if err := r.publishUpdate(ctx, jobID, u); err != nil {
		r.log.Debug("sending a job update failed; retrying after the next connection", "job", jobID, "err", err)
		r.pending = &u
		return
	}
	r.pending = nil
}

// sendFinal sends the outcome in rec.Final; it stays in current.json
// until the hub acknowledges it, so it is resent after each connection.
func (r *Runner) sendFinal(ctx context.Context) {
	if err := r.publishUpdate(ctx, r.rec.JobID, *r.rec.Final); err != nil {
		r.log.Debug("sending a job outcome failed; retrying after the next connection", "job", r.rec.JobID, "err", err)
	}
}

// finish records the outcome of the execution in hand and sends it.
func (r *Runner) finish(ctx context.Context, status protocol.JobStatus, details map[string]string) {
	r.rec.Final = &update{Status: status, Details: details}
	r.pending = nil
	if err := saveRecord(r.path, r.rec); err != nil {
		r.log.Error("saving the job outcome", "job", r.rec.JobID, "err", err)
	}
	r.log.Info("job finished", "job", r.rec.JobID, "status", status, "reason", details["reason"])
	r.sendFinal(ctx)
}

// clear forgets the execution in hand: the hub has its final state.
func (r *Runner) clear() {
	if r.rec == nil {
		return
	}
	if err := removeRecord(r.path); err != nil {
		r.log.Error("removing the job state", "err", err)
	}
	r.recent = append(r.recent, r.rec.JobID)
	if len(r.recent) > maxRecent {
		r.recent = r.recent[1:]
	}
	r.rec, r.pending = nil, nil
}

func (r *Runner) handle(ctx context.Context, m message) {
	if len(m.payload) > protocol.MaxJobsMessageBytes {
		r.log.Warn("ignoring an oversize jobs message", "topic", m.topic, "bytes", len(m.payload))
		return
	}
	p, err := protocol.ParseJobsTopic(m.topic)
	if err != nil || p.DeviceID != r.opts.DeviceID || p.IsRequest() {
		return
	}
	switch {
	case p.Op == protocol.JobsOpNotifyNext:
		var n protocol.JobsNotifyNext
		if err := json.Unmarshal(m.payload, &n); err != nil {
			r.log.Warn("ignoring a notify-next that does not decode", "err", err)
			return
		}
		r.next(ctx, n.Execution)
	case p.Op == protocol.JobsOpGet && p.JobID == protocol.JobsNext && p.Suffix == protocol.JobsAccepted:
		var res protocol.JobsExecutionResponse
		if err := json.Unmarshal(m.payload, &res); err != nil {
			r.log.Warn("ignoring a $next/get answer that does not decode", "err", err)
			return
		}
		r.next(ctx, res.Execution)
	case p.Op == protocol.JobsOpUpdate && p.Suffix == protocol.JobsAccepted:
		var res protocol.JobsUpdateResponse
		if err := json.Unmarshal(m.payload, &res); err != nil {
			r.log.Warn("ignoring an update answer that does not decode", "err", err)
			return
		}
		if r.rec != nil && r.rec.JobID == p.JobID && r.rec.Final != nil && res.ExecutionState != nil && res.ExecutionState.Status.Terminal() {
			r.clear()
		}
	case p.Suffix == protocol.JobsRejected:
		var e protocol.JobsError
		if err := json.Unmarshal(m.payload, &e); err != nil {
			r.log.Warn("ignoring a jobs rejection that does not decode", "err", err)
			return
		}
		r.rejected(ctx, p, e)
	}
}

// rejected handles a refused request.
func (r *Runner) rejected(ctx context.Context, p protocol.JobsTopicParts, e protocol.JobsError) {
	if p.Op != protocol.JobsOpUpdate || r.rec == nil || r.rec.JobID != p.JobID {
		r.log.Warn("the hub refused a jobs request", "op", p.Op, "job", p.JobID, "code", e.Code, "message", e.Message)
		return
	}
	switch e.Code {
	case protocol.JobsInvalidStateTransition, protocol.JobsResourceNotFound:
		// The execution is final at the hub (canceled, timed out, or our
		// outcome arrived twice): stop caring about it.
		if r.run != nil && r.run.jobID == p.JobID {
			r.stop(nil, false)
			return
		}
		r.clear()
	case protocol.JobsInternalError:
		r.log.Warn("the hub failed to take a job update; retrying after the next connection", "job", p.JobID, "message", e.Message)
	default:
		r.log.Error("the hub refused a job update", "job", p.JobID, "code", e.Code, "message", e.Message)
		if r.rec.Final != nil {
			r.clear() // resending the same outcome cannot help
		}
	}
}

// stop cancels the run in progress because the hub finished its
// execution; after (when known) is the execution to start once the
// handler returned.
func (r *Runner) stop(after *protocol.JobExecution, known bool) {
	if !r.run.stopped {
		r.log.Info("the hub ended the running job; stopping it", "job", r.run.jobID)
	}
	r.run.stopped = true
	r.run.cancel()
	if known {
		r.after, r.waitAfter = after, true
	}
}

// next handles the hub's word on the next pending execution (nil: none).
func (r *Runner) next(ctx context.Context, e *protocol.JobExecution) {
	if e != nil && (e.JobID == "" || protocol.ValidJobID(e.JobID) != nil || e.Status.Terminal()) {
		r.log.Warn("ignoring an invalid job execution", "job", e.JobID, "status", e.Status)
		return
	}
	if r.run != nil {
		if e != nil && e.JobID == r.run.jobID {
			return
		}
		// The hub names another execution (or none) next, so the one
		// running is final there.
		r.stop(e, true)
		return
	}
	if r.rec != nil {
		if e != nil && e.JobID == r.rec.JobID {
			if r.rec.Final != nil {
				r.sendFinal(ctx) // the hub has not got it yet
			}
			return
		}
		r.clear() // final at the hub
	}
	if e == nil {
		return
	}
	if slices.Contains(r.recent, e.JobID) {
		// A stale answer: the hub has this execution's final state.
		r.log.Debug("ignoring a finished job named by a stale message", "job", e.JobID)
		return
	}
	if e.Status == protocol.JobInProgress {
		// Started by an earlier life of the agent that left no state.
		h := r.opts.Handlers[protocol.JobDocumentType(e.JobDocument)]
		if h != nil && !resumable(h) {
			r.rec = &record{JobID: e.JobID, Document: e.JobDocument, Version: e.VersionNumber}
			r.finish(ctx, protocol.JobFailed, map[string]string{
				"stage": "interrupted", "reason": ReasonInterrupted, "message": "the job was in progress before the agent started",
			})
			return
		}
		r.start(ctx, e.JobID, e.JobDocument, e.VersionNumber, h != nil)
		return
	}
	r.start(ctx, e.JobID, e.JobDocument, e.VersionNumber, false)
}

// start takes an execution in hand and runs its handler.
func (r *Runner) start(ctx context.Context, jobID string, doc json.RawMessage, version int64, resumed bool) {
	typ := protocol.JobDocumentType(doc)
	r.rec = &record{JobID: jobID, Document: doc, Version: version}
	h := r.opts.Handlers[typ]
	if h == nil {
		r.log.Warn("rejecting a job of an unsupported type", "job", jobID, "type", typ)
		r.finish(ctx, protocol.JobRejected, map[string]string{
			"reason": ReasonUnsupportedType, "message": truncate(fmt.Sprintf("no handler for job type %q", typ), maxMessageLen),
		})
		return
	}
	if err := saveRecord(r.path, r.rec); err != nil {
		// Without the state a crash cannot be reported; run anyway: the
		// hub times the job out if that happens.
		r.log.Error("saving the job state", "job", jobID, "err", err)
	}
	stage := StageStarted
	if resumed {
		stage = StageResumed
	}
	r.log.Info("job starting", "job", jobID, "type", typ, "resumed", resumed)
	r.progMu.Lock()
	r.lastSent, r.lastSentAt, r.progPending = progressReport{jobID: jobID, stage: stage}, r.opts.Now(), false
	r.progMu.Unlock()
	r.sendUpdate(ctx, jobID, update{Status: protocol.JobInProgress, Details: map[string]string{"stage": stage}})

	hctx, cancel := context.WithCancel(ctx)
	run := &active{jobID: jobID, cancel: cancel, done: make(chan result, 1), stage: stage}
	r.run = run
	job := Job{ID: jobID, Type: typ, Document: doc, Resumed: resumed}
	progress := func(stage string, percent int) { r.report(jobID, stage, percent) }
	go func() {
		defer cancel()
		var res result
		defer func() {
			if p := recover(); p != nil {
				res = result{err: fmt.Errorf("job handler panicked: %v", p)}
			}
			run.done <- res
		}()
		res.details, res.err = h.Run(hctx, job, progress)
	}()
}

// report is a handler's progress callback: it decides whether the
// progress is worth an update and hands it to Run's goroutine.
func (r *Runner) report(jobID, stage string, percent int) {
	percent = max(0, min(percent, 100))
	r.progMu.Lock()
	now := r.opts.Now()
	r.latest = progressReport{jobID: jobID, stage: stage, percent: percent}
	last := r.lastSent
	send := last.jobID != jobID || stage != last.stage || percent-last.percent >= r.opts.ProgressStep ||
		percent < last.percent || now.Sub(r.lastSentAt) >= r.opts.ProgressInterval
	if send {
		r.lastSent, r.lastSentAt = progressReport{jobID: jobID, stage: stage, percent: percent}, now
		r.prog, r.progPending = r.lastSent, true
	}
	r.progMu.Unlock()
	if send {
		select {
		case r.progress <- struct{}{}:
		default:
		}
	}
}

func (r *Runner) sendProgress(ctx context.Context) {
	r.progMu.Lock()
	p, ok := r.prog, r.progPending
	r.progPending = false
	r.progMu.Unlock()
	if !ok || r.run == nil || r.run.stopped || r.run.jobID != p.jobID {
		return
	}
	r.run.stage = truncate(p.stage, protocol.MaxJobStatusDetailValueLen)
	r.sendUpdate(ctx, p.jobID, update{Status: protocol.JobInProgress, Details: map[string]string{
		"stage": r.run.stage, "progress": strconv.Itoa(p.percent),
	}})
}

// finished handles the end of a handler run.
func (r *Runner) finished(ctx context.Context, res result) {
	run := r.run
	r.run = nil
	// Progress the handler reported last may still wait: it is moot now.
	r.progMu.Lock()
	r.progPending = false
	if r.latest.jobID == run.jobID && r.latest.stage != "" {
		run.stage = truncate(r.latest.stage, protocol.MaxJobStatusDetailValueLen)
	}
	r.progMu.Unlock()
	switch {
	case run.stopped:
		r.log.Info("stopped job ended", "job", run.jobID, "err", res.err)
		r.clear()
		if r.waitAfter {
			after := r.after
			r.after, r.waitAfter = nil, false
			r.next(ctx, after)
		} else {
			r.askNext(ctx)
		}
	case res.err == nil:
		r.finish(ctx, protocol.JobSucceeded, successDetails(res.details))
	case ctx.Err() != nil:
		// The agent is stopping: current.json stays without an outcome,
		// so the next start resumes the job or reports it interrupted.
	default:
		d := cleanDetails(res.details, 7)
		d["stage"] = run.stage
		d["reason"] = reasonOf(res.err)
		d["message"] = truncate(res.err.Error(), maxMessageLen)
		r.finish(ctx, protocol.JobFailed, d)
	}
}

func successDetails(details map[string]string) map[string]string {
	d := cleanDetails(details, protocol.MaxJobStatusDetails-1)
	d["stage"] = StageCommitted
	return d
}

// reasonOf returns the reason code err carries, else ReasonError.
func reasonOf(err error) string {
	var rs Reasoner
	if errors.As(err, &rs) {
		if reason := truncate(rs.Reason(), protocol.MaxJobStatusDetailValueLen); reason != "" {
			return reason
		}
	}
	return ReasonError
}

// cleanDetails returns the valid entries of a handler's details, at most
// n of them (by key order), leaving out the runner's own keys.
func cleanDetails(details map[string]string, n int) map[string]string {
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(details)) {
		if len(out) == n {
			break
		}
		switch k {
		case "stage", "reason", "message", "progress":
			continue
		}
		if k == "" || len(k) > protocol.MaxJobStatusDetailKeyLen || !utf8.ValidString(k) {
			continue
		}
		out[k] = truncate(details[k], protocol.MaxJobStatusDetailValueLen)
	}
	return out
}

// truncate shortens s to at most n bytes without splitting a UTF-8
// sequence, and replaces invalid UTF-8.
func truncate(s string, n int) string {
	s = string([]rune(s)) // replaces invalid bytes
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
