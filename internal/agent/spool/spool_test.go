package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testSpool is an open spool whose writer runs until stop or the end of
// the test.
type testSpool struct {
	*Spool
	opts     Options
	logs     *logBuffer
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// openSpool opens a spool in dir (a new temporary directory if "") and
// runs its writer.
func openSpool(t testing.TB, dir string, opts Options) *testSpool {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if opts.Path == "" {
		opts.Path = filepath.Join(dir, "spool.db")
	}
	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testSpool{Spool: s, opts: opts, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Run(ctx) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stopWriter stops the writer and checks Run's result; it may be called
// twice.
func (ts *testSpool) stopWriter(t testing.TB) {
	t.Helper()
	ts.stopOnce.Do(func() {
		ts.cancel()
		select {
		case err := <-ts.done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of cancel")
		}
	})
}

// stop stops the writer and closes the file; it may be called twice.
func (ts *testSpool) stop(t testing.TB) {
	t.Helper()
	ts.stopWriter(t)
	if err := ts.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

var baseTime = time.UnixMilli(1764086400000)

func point(v float64) *outpostv1.Point {
	return &outpostv1.Point{Sensor: "s", TsUnixMs: baseTime.UnixMilli() + int64(v), Value: &outpostv1.Point_Num{Num: v}}
}

func points(from, n int) []*outpostv1.Point {
	out := make([]*outpostv1.Point, n)
	for i := range out {
		out[i] = point(float64(from + i))
	}
	return out
}

func appendOK(t testing.TB, s *testSpool, ps []*outpostv1.Point) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Append(ctx, ps); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// stored is one waiting point as read back.
type stored struct {
	seq   uint64
	value float64
}

// readAll reads every waiting point with ReadBatch, checking that each
// batch is dense and within the limits.
func readAll(t testing.TB, s *Spool) []stored {
	t.Helper()
	var out []stored
	from := uint64(0)
	for {
		b, err := s.ReadBatch(from, 0, 7, protocol.MaxPayloadBytes)
		if err != nil {
			t.Fatalf("ReadBatch: %v", err)
		}
		if b == nil {
			return out
		}
		if len(b.Points) == 0 || len(b.Points) > 7 || b.SeqFirst < from {
			t.Fatalf("ReadBatch(%d) = seq %d with %d points", from, b.SeqFirst, len(b.Points))
		}
		for i, p := range b.Points {
			out = append(out, stored{b.SeqFirst + uint64(i), p.GetNum()})
		}
		from = b.SeqFirst + uint64(len(b.Points))
	}
}

func seqs(ps []stored) []uint64 {
	out := make([]uint64, len(ps))
	for i, p := range ps {
		out[i] = p.seq
	}
	return out
}

// checkDense fails unless ps holds exactly the seqs first..last in order.
func checkDense(t testing.TB, ps []stored, first, last uint64) {
	t.Helper()
	if uint64(len(ps)) != last-first+1 {
		t.Fatalf("%d points stored, want seqs %d..%d", len(ps), first, last)
	}
	for i, p := range ps {
		if p.seq != first+uint64(i) {
			t.Fatalf("point %d has seq %d, want %d (seqs must be dense)", i, p.seq, first+uint64(i))
		}
	}
}

func TestConcurrentAppendStoresEveryPointOnceWithDenseSeqs(t *testing.T) {
	s := openSpool(t, "", Options{CommitInterval: 2 * time.Millisecond, CommitPoints: 1000})
	const writers, calls, per = 32, 25, 4
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for c := range calls {
				base := w*1_000_000 + c*per
				if err := s.Append(context.Background(), points(base, per)); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := readAll(t, s.Spool)
	const total = writers * calls * per
	checkDense(t, got, 1, total)

	// Every point once; one call's points consecutive and in order; one
	// writer's calls in the order it made them.
	seen := map[float64]uint64{}
	for _, p := range got {
		if prev, dup := seen[p.value]; dup {
			t.Fatalf("value %v stored at seq %d and %d", p.value, prev, p.seq)
		}
		seen[p.value] = p.seq
	}
	for w := range writers {
		for c := range calls {
			base := w*1_000_000 + c*per
			first, ok := seen[float64(base)]
			if !ok {
				t.Fatalf("value %d missing", base)
			}
			for i := 1; i < per; i++ {
				if seen[float64(base+i)] != first+uint64(i) {
					t.Fatalf("the points of one Append are not consecutive: %d at %d, %d at %d", base, first, base+i, seen[float64(base+i)])
				}
			}
			if c > 0 && seen[float64(base-per)] >= first {
				t.Fatalf("writer %d: call %d stored before call %d", w, c, c-1)
			}
		}
	}
	st := s.Stats()
	if st.Points != total || st.NextSeq != total+1 || st.FirstSeq != 1 || st.Appends != writers*calls || st.AppendedPoints != total {
		t.Errorf("stats = %+v", st)
	}
	// Group commit: far fewer transactions than Append calls.
	if st.Commits == 0 || st.Commits*4 > st.Appends {
		t.Errorf("%d commits for %d appends; group commit should make at most a quarter as many", st.Commits, st.Appends)
	}
	t.Logf("%d appends in %d commits (%.1f per commit), %s committing", st.Appends, st.Commits, float64(st.Appends)/float64(st.Commits), st.CommitTime)
}

func TestGroupCommitWindowAndPointLimit(t *testing.T) {
	t.Run("the window groups appends", func(t *testing.T) {
		s := openSpool(t, "", Options{CommitInterval: 200 * time.Millisecond, CommitPoints: 1000})
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() { appendOK(t, s, points(i*10, 3)) })
		}
		wg.Wait()
		// All 20 arrive well within 200ms of the first: one commit, two if
		// the scheduler was slow to start some goroutines.
		if st := s.Stats(); st.Commits > 2 || st.Appends != 20 {
			t.Errorf("%d commits for %d appends, want 1 or 2", st.Commits, st.Appends)
		}
	})
	t.Run("commit points end the window early", func(t *testing.T) {
		s := openSpool(t, "", Options{CommitInterval: time.Hour, CommitPoints: 10})
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() { appendOK(t, s, points(i*10, 5)) })
		}
		wg.Wait() // would take an hour without the point limit
		if st := s.Stats(); st.Commits != 1 || st.Points != 10 {
			t.Errorf("stats = %+v, want 10 points in 1 commit", st)
		}
	})
	t.Run("no interval commits at once", func(t *testing.T) {
		s := openSpool(t, "", Options{CommitInterval: 0})
		for i := range 5 {
			appendOK(t, s, points(i, 1))
		}
		if st := s.Stats(); st.Commits != 5 {
			t.Errorf("%d commits, want 5 (one per sequential append)", st.Commits)
		}
	})
}

func TestRestartKeepsPointsAndContinuesSeq(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SeqBlock: 4})
	appendOK(t, s, points(0, 10))
	if err := s.Delete(context.Background(), 1, 3); err != nil {
		t.Fatal(err)
	}
	s.stop(t)

	s = openSpool(t, dir, Options{SeqBlock: 4})
	st := s.Stats()
	if st.Points != 7 || st.FirstSeq != 4 || st.NextSeq != 11 || st.Oldest.IsZero() {
		t.Fatalf("after reopening: %+v, want points 4..10 waiting and next seq 11", st)
	}
	appendOK(t, s, points(100, 5))
	got := readAll(t, s.Spool)
	checkDense(t, got, 4, 15)
	if got[0].value != 3 || got[7].value != 100 {
		t.Errorf("values = %+v", got)
	}
	// The floor file reserves ahead of every issued seq.
	floor, err := readFloor(filepath.Join(dir, FloorFileName))
	if err != nil || floor <= 15 {
		t.Errorf("seq floor = %d, %v; want above 15", floor, err)
	}
}

func TestReadBatchLimitsAndGaps(t *testing.T) {
	s := openSpool(t, "", Options{})
	appendOK(t, s, points(0, 20))
	read := func(from, until uint64, maxPoints, maxBytes int) (uint64, int) {
		t.Helper()
		b, err := s.ReadBatch(from, until, maxPoints, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			return 0, 0
		}
		return b.SeqFirst, len(b.Points)
	}
	one := batchCost(mustRecord(t, point(0)))
	for _, tt := range []struct {
		name                 string
		from, until          uint64
		maxPoints, maxBytes  int
		wantFirst, wantCount int
	}{
		{"max points", 0, 0, 5, 1 << 20, 1, 5},
		{"from the middle", 8, 0, 5, 1 << 20, 8, 5},
		{"until", 8, 10, 5, 1 << 20, 8, 2},
		{"until excludes all", 8, 8, 5, 1 << 20, 0, 0},
		{"max bytes", 0, 0, 100, 3 * one, 1, 3},
		{"at least one point", 0, 0, 100, 1, 1, 1},
		{"past the end", 21, 0, 5, 1 << 20, 0, 0},
	} {
		if first, n := read(tt.from, tt.until, tt.maxPoints, tt.maxBytes); first != uint64(tt.wantFirst) || n != tt.wantCount {
			t.Errorf("%s: batch from %d with %d points, want from %d with %d", tt.name, first, n, tt.wantFirst, tt.wantCount)
		}
	}
	if err := s.Delete(context.Background(), 5, 7); err != nil {
		t.Fatal(err)
	}
	if first, n := read(0, 0, 100, 1<<20); first != 1 || n != 4 {
		t.Errorf("a batch crosses the gap at 5..7: from %d with %d points, want 1..4", first, n)
	}
	if first, n := read(5, 0, 100, 1<<20); first != 8 || n != 13 {
		t.Errorf("reading from inside the gap: from %d with %d points, want 8..20", first, n)
	}
	if _, err := s.ReadBatch(0, 0, 0, 100); err == nil {
		t.Error("ReadBatch with max points 0 = nil error")
	}
}

func mustRecord(t testing.TB, p *outpostv1.Point) []byte {
	t.Helper()
	rec, err := encodeRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestDamagedRecordIsSkippedAndDeletable(t *testing.T) {
	s := openSpool(t, "", Options{})
	appendOK(t, s, points(0, 6))
	// Flip a bit of seq 3's value behind the spool's back.
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPoints)
		k := make([]byte, keyLen)
		putKey(k, 3)
		v := append([]byte(nil), b.Get(k)...)
		v[len(v)-1] ^= 0x10
		return b.Put(k, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s.Spool)
	if want := []uint64{1, 2, 4, 5, 6}; fmt.Sprint(seqs(got)) != fmt.Sprint(want) {
		t.Fatalf("seqs read = %v, want %v", seqs(got), want)
	}
	if d := s.Stats().Damaged; d != 1 {
		t.Errorf("damaged = %d, want 1", d)
	}
	// Deleting from where the reader started removes the damaged record.
	if err := s.Delete(context.Background(), 3, 6); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Points != 2 {
		t.Errorf("points = %d after deleting 3..6, want 2", st.Points)
	}
}

func TestWaitWakesOnCommit(t *testing.T) {
	s := openSpool(t, "", Options{})
	next := s.NextSeq()
	woke := make(chan error, 1)
	go func() { woke <- s.Wait(context.Background(), next) }()
	select {
	case err := <-woke:
		t.Fatalf("Wait returned %v before anything was stored", err)
	case <-s.Changed():
		t.Fatal("Changed fired without a commit")
	default:
	}
	appendOK(t, s, points(0, 1))
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after a commit")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Wait(ctx, s.NextSeq()); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled context = %v", err)
	}
}

func TestStopCommitsPendingThenRefusesAppends(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{CommitInterval: time.Hour, CommitPoints: 1000})
	done := make(chan error, 1)
	go func() { done <- s.Append(context.Background(), points(0, 3)) }()
	testutil.Eventually(t, 5*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pendingPoints != 3 {
			return fmt.Errorf("%d points pending", s.pendingPoints)
		}
		return nil
	})
	s.stopWriter(t) // the writer flushes what waits in its window
	if err := <-done; err != nil {
		t.Fatalf("Append pending at stop = %v, want it committed", err)
	}
	if err := s.Append(context.Background(), points(10, 1)); !errors.Is(err, ErrStopped) {
		t.Errorf("Append after Run returned = %v, want ErrStopped", err)
	}
	// Deletes still work (the uplink's grace period after the writer).
	if err := s.Delete(context.Background(), 1, 1); err != nil {
		t.Errorf("Delete after Run returned = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := s.ReadBatch(0, 0, 1, 100); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadBatch after Close = %v, want ErrClosed", err)
	}
	if err := s.Delete(context.Background(), 2, 2); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close = %v, want ErrClosed", err)
	}
	if st := s.Stats(); st.Points != 2 || st.NextSeq != 4 {
		t.Errorf("stats after Close = %+v", st)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run = nil error")
	}

	s2 := openSpool(t, dir, Options{})
	checkDense(t, readAll(t, s2.Spool), 2, 3)
}

func TestOverflowDropOldest(t *testing.T) {
	dir := t.TempDir()
	one := recordCost(len(mustRecord(t, point(100))))
	opts := Options{MaxBytes: 10 * one, Overflow: OverflowDropOldest, CommitInterval: 0}
	s := openSpool(t, dir, opts)
	for i := range 100 {
		appendOK(t, s, points(100+i, 1))
	}
	appendOK(t, s, points(200, 25)) // one append larger than the spool
	st := s.Stats()
	if st.Dropped != 115 || st.Points != 10 || st.Bytes > opts.MaxBytes || st.Expired != 0 {
		t.Fatalf("stats = %+v, want exactly 115 dropped and the newest 10 kept within %d bytes", st, opts.MaxBytes)
	}
	got := readAll(t, s.Spool)
	checkDense(t, got, 116, 125)
	if got[0].value != 215 || got[9].value != 224 {
		t.Errorf("kept values %v..%v, want the newest 215..224", got[0].value, got[9].value)
	}
	if ws := s.WireStats(); ws.GetDropped() != 115 || ws.GetPoints() != 10 || ws.GetOldestUnixMs() == 0 {
		t.Errorf("wire stats = %v", ws)
	}
	// Rate-limited logging: 101 drops, one line.
	if n := strings.Count(s.logs.String(), "spool dropped undelivered points"); n != 1 {
		t.Errorf("%d drop log lines, want 1:\n%s", n, s.logs.String())
	}
	s.stop(t)

	// The count is persisted.
	s = openSpool(t, dir, opts)
	if st := s.Stats(); st.Dropped != 115 || st.Points != 10 || st.NextSeq != 126 {
		t.Errorf("after reopening: %+v", st)
	}
}

func TestOverflowBlock(t *testing.T) {
	one := recordCost(len(mustRecord(t, point(0))))
	s := openSpool(t, "", Options{MaxBytes: 10 * one, Overflow: OverflowBlock, CommitInterval: time.Millisecond})
	appendOK(t, s, points(0, 10)) // full

	blocked := make(chan error, 1)
	go func() { blocked <- s.Append(context.Background(), points(10, 3)) }()
	cctx, cancel := context.WithCancel(context.Background())
	abandoned := make(chan error, 1)
	go func() { abandoned <- s.Append(cctx, points(20, 1)) }()
	testutil.Eventually(t, 5*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pendingPoints != 4 {
			return fmt.Errorf("%d points pending, want 4", s.pendingPoints)
		}
		return nil
	})
	select {
	case err := <-blocked:
		t.Fatalf("Append into a full spool returned %v; want it to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-abandoned; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Append = %v", err)
	}

	// Acknowledged points leave, which makes room.
	if err := s.Delete(context.Background(), 1, 2); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-blocked:
		t.Fatalf("Append returned %v with room for 2 of its 3 points", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := s.Delete(context.Background(), 3, 3); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Append still blocked after room was made")
	}
	got := readAll(t, s.Spool)
	checkDense(t, got, 4, 13) // the abandoned point was never stored
	if got[7].value != 10 {
		t.Errorf("seq 11 holds %v, want 10", got[7].value)
	}
	if st := s.Stats(); st.Dropped != 0 {
		t.Errorf("block dropped %d points", st.Dropped)
	}
	if err := s.Append(context.Background(), points(0, 11)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append larger than the spool = %v, want ErrTooLarge", err)
	}
}

func TestMaxAgeExpiry(t *testing.T) {
	var now atomic.Int64
	now.Store(baseTime.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s := openSpool(t, "", Options{MaxAge: time.Hour, Now: clock})
	appendOK(t, s, points(0, 5))
	if got := s.Stats().Oldest; !got.Equal(baseTime) {
		t.Errorf("oldest = %v, want %v", got, baseTime)
	}
	now.Add(int64(90 * time.Minute))
	appendOK(t, s, points(5, 3)) // the commit expires the first five
	st := s.Stats()
	if st.Dropped != 5 || st.Expired != 5 || st.Points != 3 || !st.Oldest.Equal(clock()) {
		t.Fatalf("stats = %+v, want 5 expired, 3 left stored at %v", st, clock())
	}
	checkDense(t, readAll(t, s.Spool), 6, 8)

	// Without new points the writer's timer expires them.
	now.Add(int64(2 * time.Hour))
	testutil.Eventually(t, 5*time.Second, func() error {
		if st := s.Stats(); st.Points != 0 || st.Dropped != 8 || !st.Oldest.IsZero() {
			return fmt.Errorf("stats = %+v, want everything expired", st)
		}
		return nil
	})
}

func TestSeqFloor(t *testing.T) {
	t.Run("an earlier agent's reservation", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FloorFileName), []byte("20001\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := openSpool(t, dir, Options{})
		appendOK(t, s, points(0, 2))
		checkDense(t, readAll(t, s.Spool), 20001, 20002)
	})
	t.Run("reserved before use", func(t *testing.T) {
		dir := t.TempDir()
		s := openSpool(t, dir, Options{SeqBlock: 10})
		for _, tt := range []struct {
			n    int
			want uint64
		}{{3, 11}, {5, 11}, {3, 22}, {30, 52}} {
			appendOK(t, s, points(0, tt.n))
			if floor, err := readFloor(filepath.Join(dir, FloorFileName)); err != nil || floor != tt.want {
				t.Errorf("after %d more points the floor is %d, %v; want %d", tt.n, floor, err, tt.want)
			}
		}
	})
	t.Run("unreadable floor and no spool", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FloorFileName), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := openSpool(t, dir, Options{})
		if next := s.NextSeq(); next < uint64(time.Now().Add(-time.Hour).UnixMicro()) {
			t.Errorf("next seq = %d, want a clock-derived number above anything issued", next)
		}
		if !strings.Contains(s.logs.String(), "level=ERROR") {
			t.Errorf("no error logged:\n%s", s.logs.String())
		}
		if floor, err := readFloor(filepath.Join(dir, FloorFileName)); err != nil || floor <= s.NextSeq() {
			t.Errorf("floor = %d, %v; want it rewritten above %d", floor, err, s.NextSeq())
		}
	})
	t.Run("unreadable floor, healthy spool", func(t *testing.T) {
		dir := t.TempDir()
		s := openSpool(t, dir, Options{})
		appendOK(t, s, points(0, 4))
		s.stop(t)
		if err := os.WriteFile(filepath.Join(dir, FloorFileName), []byte("-1"), 0o600); err != nil {
			t.Fatal(err)
		}
		s = openSpool(t, dir, Options{})
		if next := s.NextSeq(); next != 5 {
			t.Errorf("next seq = %d, want 5 from the spool", next)
		}
		if floor, _ := readFloor(filepath.Join(dir, FloorFileName)); floor <= 5 {
			t.Errorf("floor = %d, want it rewritten above 5", floor)
		}
	})
}

func TestOpenErrorsThatAreNotCorruption(t *testing.T) {
	if _, err := Open(Options{}); err == nil || !strings.Contains(err.Error(), "no path") {
		t.Errorf("Open without a path = %v", err)
	}
	if _, err := Open(Options{Path: "x", CommitPoints: -1, MaxBytes: 3, Overflow: "spill", MaxAge: -1}); err == nil ||
		!strings.Contains(err.Error(), "commit points") || !strings.Contains(err.Error(), "max bytes") ||
		!strings.Contains(err.Error(), "overflow") || !strings.Contains(err.Error(), "max age") {
		t.Errorf("Open with bad options = %v, want every problem", err)
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir", "spool.db")
	if _, err := Open(Options{Path: missing}); err == nil {
		t.Error("Open in a missing directory = nil error")
	}

	// A file another process (or spool) holds is busy, not corrupt.
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	_, err := Open(Options{Path: s.opts.Path})
	if err == nil || strings.Contains(err.Error(), "corrupt") {
		t.Errorf("second Open of a locked file = %v, want a plain error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 { // spool.db and seq
		t.Errorf("the directory holds %d entries, want the spool and the floor only", len(entries))
	}
}
