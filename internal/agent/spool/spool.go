package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// Overflow is what Append does when new points would exceed MaxBytes.
type Overflow string

// The overflow policies.
const (
	// OverflowDropOldest deletes the oldest waiting points to make room,
	// and counts them.
	OverflowDropOldest Overflow = "drop_oldest"
	// OverflowBlock makes Append wait until deliveries make room.
	OverflowBlock Overflow = "block"
)

// Defaults of Options.
const (
	DefaultCommitInterval = 2 * time.Millisecond
	DefaultCommitPoints   = 1000
	DefaultMaxBytes       = 64 << 20
	// FloorFileName is the default name of the seq floor file, next to
	// the spool file.
	FloorFileName = "seq"
)

// dropLogEvery is the least time between two log lines about drops.
const dropLogEvery = 10 * time.Second

// Options configures a Spool.
type Options struct {
	// Path is the spool file; it is created if missing. Required.
	Path string
	// SeqFloorPath is the file that keeps the reserved seq ceiling outside
	// the spool file, so that a fresh spool (after a corrupt file was moved
	// aside, or the file was deleted) never reuses a number. Default: "seq"
	// in Path's directory.
	SeqFloorPath string
	// SeqBlock is how many numbers one write of the floor file reserves
	// ahead. Default DefaultSeqBlock.
	SeqBlock uint64
	// CommitInterval is how long the writer collects Appends, from the
	// first one pending, before one transaction stores them all. 0 commits
	// as soon as the writer is free, so only the Appends that arrive while
	// a commit is being synced are grouped. The zero value means 0; the
	// agent uses DefaultCommitInterval.
	CommitInterval time.Duration
	// CommitPoints ends the collecting early once this many points wait.
	// Default DefaultCommitPoints.
	CommitPoints int
	// MaxBytes bounds the stored point data: each point counts its
	// encoded size plus recordOverhead bytes. Default DefaultMaxBytes.
	MaxBytes int64
	// MaxAge drops points stored longer ago than this; 0 keeps them.
	MaxAge time.Duration
	// Overflow is the policy when MaxBytes is reached. Default
	// OverflowDropOldest.
	Overflow Overflow
	// Logger receives the spool's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock for storage times and MaxAge; nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Path == "" {
		errs = append(errs, errors.New("no path"))
	}
	if o.SeqFloorPath == "" && o.Path != "" {
		o.SeqFloorPath = filepath.Join(filepath.Dir(o.Path), FloorFileName)
	}
	if o.SeqBlock == 0 {
		o.SeqBlock = DefaultSeqBlock
	}
	if o.CommitInterval < 0 {
		errs = append(errs, fmt.Errorf("commit interval must not be negative, got %s", o.CommitInterval))
	}
	if o.CommitPoints == 0 {
		o.CommitPoints = DefaultCommitPoints
	}
	if o.CommitPoints < 1 {
		errs = append(errs, fmt.Errorf("commit points must be at least 1, got %d", o.CommitPoints))
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxBytes < recordOverhead {
		errs = append(errs, fmt.Errorf("max bytes must be at least %d, got %d", recordOverhead, o.MaxBytes))
	}
	if o.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max age must not be negative, got %s", o.MaxAge))
	}
	switch o.Overflow {
	case "":
		o.Overflow = OverflowDropOldest
	case OverflowDropOldest, OverflowBlock:
	default:
		errs = append(errs, fmt.Errorf("overflow must be %s or %s, got %q", OverflowDropOldest, OverflowBlock, o.Overflow))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, errors.Join(errs...)
}

// Stats is a snapshot of a spool.
type Stats struct {
	// Points is how many points wait for delivery.
	Points int64
	// Bytes is how much of MaxBytes they use.
	Bytes int64
	// FileBytes is the size of the spool file.
	FileBytes int64
	// Dropped counts points removed undelivered, by the overflow policy or
	// MaxAge, since the spool file was created (persisted).
	Dropped uint64
	// Expired counts the points of Dropped that MaxAge removed since Open.
	Expired uint64
	// Oldest is when the oldest waiting point was stored; zero if none.
	Oldest time.Time
	// FirstSeq is the seq of the oldest waiting point; 0 if none.
	FirstSeq uint64
	// NextSeq is the seq the next stored point gets.
	NextSeq uint64
	// Appends and AppendedPoints count Append calls committed since Open,
	// and their points.
	Appends, AppendedPoints uint64
	// Deleted counts points removed by Delete (delivered) since Open.
	Deleted uint64
	// Commits counts write transactions since Open; CommitTime is the time
	// they took, fsync included.
	Commits    uint64
	CommitTime time.Duration
	// Damaged counts records skipped by ReadBatch because their checksum
	// or encoding was broken.
	Damaged uint64
	// CorruptResets counts spool files found corrupt and moved aside, as
	// far as the "<name>.corrupt-*" files kept next to the spool show.
	CorruptResets uint64
	// CorruptFile is where Open moved a corrupt file to; "" if it did not.
	CorruptFile string
}

type writerState int

const (
	notStarted writerState = iota
	running
	stopped
)

// opState is where an op is; guarded by Spool.mu.
type opState int

const (
	opPending opState = iota
	opTaken
	opAbandoned
)

// op is one Append or Delete waiting for the writer.
type op struct {
	// recs are the records of an Append; nil for a Delete.
	recs [][]byte
	// cost is what recs count against MaxBytes.
	cost int64
	// first and last bound the seqs a Delete removes.
	first, last uint64
	state       opState
	done        chan error // buffered; receives the outcome once
}

// Spool is a durable FIFO of points. Its methods are safe for concurrent
// use: Append from any number of goroutines, the reader methods from the
// uplink, Stats from anywhere.
type Spool struct {
	opts Options
	log  *slog.Logger
	db   *bolt.DB

	// commitMu serializes write transactions (the writer's, and Delete's
	// once the writer has stopped) with each other and with Close.
	commitMu sync.Mutex
	// ceiling is the stored seq floor: no seq at or above it has been
	// issued. Guarded by commitMu.
	ceiling uint64

	mu      sync.Mutex // guards the fields below
	state   writerState
	closed  bool
	appends []*op // pending Appends, oldest first
	deletes []*op // pending Deletes
	// pendingPoints counts the points of the pending Appends.
	pendingPoints int
	// pendingSince is when the oldest pending op arrived.
	pendingSince time.Time
	// changed is closed, and replaced, after every commit.
	changed chan struct{}
	// The committed state, updated after each successful commit.
	next          uint64
	first         uint64
	count, bytes  int64
	oldest        int64 // Unix ms; 0 if empty
	dropped       uint64
	corruptResets uint64
	corruptFile   string
	lastDropLog   time.Time
	unloggedDrops uint64

	// wake gets a token when an op is queued; full when the pending
	// points reach CommitPoints.
	wake, full chan struct{}
	started    atomic.Bool

	// limits are MaxBytes, MaxAge and Overflow, which SetLimits changes
	// while the spool runs.
	limits atomic.Pointer[Limits]

	appendsN, appendedPoints, deleted, expired, damaged, commits atomic.Uint64
	commitNanos                                                  atomic.Int64
}

// Open opens (or creates) the spool at opts.Path and checks it. A corrupt
// file is moved aside and replaced by an empty spool (see the package
// documentation); Open fails only when the options are invalid or the file
// system does not let it create a working spool. Run must run for Append
// to commit.
func Open(opts Options) (*Spool, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("opening spool: %w", err)
	}
	s := &Spool{
		opts:    opts,
		log:     opts.Logger.With("component", "spool"),
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		full:    make(chan struct{}, 1),
	}
	s.limits.Store(&Limits{MaxBytes: opts.MaxBytes, MaxAge: opts.MaxAge, Overflow: opts.Overflow})
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the file. Call it after Run has returned, or instead of
// Run. Appends and Deletes still pending fail with ErrClosed. Calling
// Close twice is safe.
func (s *Spool) Close() error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	pending := append(s.appends, s.deletes...)
	s.appends, s.deletes, s.pendingPoints = nil, nil, 0
	if s.unloggedDrops > 0 {
		s.log.Warn("spool dropped points since the last report", "dropped", s.unloggedDrops, "dropped_total", s.dropped)
		s.unloggedDrops = 0
	}
	s.mu.Unlock()
	for _, o := range pending {
		o.done <- ErrClosed
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing spool: %w", err)
	}
	return nil
}

// Stats returns a snapshot. It is safe to call at any time, also after
// Close.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	st := Stats{
		Points:        s.count,
		Bytes:         s.bytes,
		Dropped:       s.dropped,
		FirstSeq:      s.first,
		NextSeq:       s.next,
		CorruptResets: s.corruptResets,
		CorruptFile:   s.corruptFile,
	}
	if s.oldest != 0 {
		st.Oldest = time.UnixMilli(s.oldest)
	}
	s.mu.Unlock()
	if fi, err := os.Stat(s.opts.Path); err == nil {
		st.FileBytes = fi.Size()
	}
	st.Expired = s.expired.Load()
	st.Appends = s.appendsN.Load()
	st.AppendedPoints = s.appendedPoints.Load()
	st.Deleted = s.deleted.Load()
	st.Commits = s.commits.Load()
	st.CommitTime = time.Duration(s.commitNanos.Load())
	st.Damaged = s.damaged.Load()
	return st
}

// WireStats returns the snapshot the agent reports to the hub in its
// status message.
func (s *Spool) WireStats() *outpostv1.SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &outpostv1.SpoolStats{
		Points:       uint64(max(s.count, 0)),
		Bytes:        uint64(max(s.bytes, 0)),
		Dropped:      s.dropped,
		OldestUnixMs: s.oldest,
	}
}

// NextSeq returns the seq the next stored point gets. Every point with a
// lower seq has been committed (or was never stored); ReadBatch sees all
// of those that still wait.
func (s *Spool) NextSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// Changed returns a channel that is closed at the next commit (new points,
// deletions or drops).
func (s *Spool) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Wait blocks until a point with seq ≥ seq may have been stored (NextSeq
// is above seq), or ctx is done.
func (s *Spool) Wait(ctx context.Context, seq uint64) error {
	for {
		ch := s.Changed()
		if s.NextSeq() > seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
