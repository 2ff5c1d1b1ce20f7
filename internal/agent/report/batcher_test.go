package report

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chanSink hands every batch to a channel.
type chanSink chan *outpostv1.TelemetryBatch

func (s chanSink) Put(ctx context.Context, b *outpostv1.TelemetryBatch) error {
	s <- b
	return nil
}

type failSink struct{}

func (failSink) Put(context.Context, *outpostv1.TelemetryBatch) error { return errors.New("disk full") }

func point(i int) *outpostv1.Point {
	return &outpostv1.Point{Sensor: "s", TsUnixMs: 1764086400000 + int64(i), Value: &outpostv1.Point_Num{Num: float64(i)}}
}

// start runs a Batcher in the background; the returned function closes in
// and returns Run's error.
func start(t *testing.T, opts Options) (chan<- *outpostv1.Point, func() error) {
	t.Helper()
	if opts.Seq == nil {
		seq, err := OpenSeq(filepath.Join(t.TempDir(), SeqFileName), 0)
		if err != nil {
			t.Fatal(err)
		}
		opts.Seq = seq
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan *outpostv1.Point)
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background(), in) }()
	return in, func() error { close(in); return <-done }
}

func receive(t *testing.T, sink chanSink) *outpostv1.TelemetryBatch {
	t.Helper()
	select {
	case b := <-sink:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no batch within 5s")
		return nil
	}
}

func TestBatchBySize(t *testing.T) {
	sink := make(chanSink, 10)
	in, stop := start(t, Options{MaxPoints: 3, MaxDelay: time.Hour, Sink: sink})
	for i := range 7 {
		in <- point(i)
	}
	for _, want := range []struct{ seq uint64 }{{1}, {4}} {
		b := receive(t, sink)
		if b.GetSeqFirst() != want.seq || len(b.GetPoints()) != 3 {
			t.Fatalf("batch = seq %d with %d points, want seq %d with 3", b.GetSeqFirst(), len(b.GetPoints()), want.seq)
		}
	}
	select {
	case b := <-sink:
		t.Fatalf("a partial batch left before the delay or the stop: %v", b)
	default:
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	last := receive(t, sink)
	if last.GetSeqFirst() != 7 || len(last.GetPoints()) != 1 || last.GetPoints()[0].GetNum() != 6 {
		t.Fatalf("last batch = %v, want seq 7 holding point 6", last)
	}
}

func TestBatchByDelay(t *testing.T) {
	sink := make(chanSink, 10)
	in, stop := start(t, Options{MaxPoints: 100, MaxDelay: 20 * time.Millisecond, Sink: sink})
	defer stop()
	in <- point(0)
	in <- point(1)
	b := receive(t, sink) // arrives without the stop: the delay flushed it
	if len(b.GetPoints()) != 2 || b.GetSeqFirst() != 1 {
		t.Fatalf("batch = %v, want 2 points from seq 1", b)
	}
	in <- point(2)
	b = receive(t, sink)
	if len(b.GetPoints()) != 1 || b.GetSeqFirst() != 3 {
		t.Fatalf("second batch = %v, want 1 point at seq 3", b)
	}
}

func TestBatchStaysUnderPayloadLimit(t *testing.T) {
	sink := make(chanSink, 100)
	in, stop := start(t, Options{MaxPoints: protocol.MaxPointsPerBatch, MaxDelay: time.Hour, Sink: sink})
	big := strings.Repeat("x", protocol.MaxStringValueLen)
	const n = 1000 // about 1 MiB of strings: needs at least 4 batches
	for range n {
		in <- &outpostv1.Point{Sensor: "log", TsUnixMs: 1764086400000, Value: &outpostv1.Point_Str{Str: big}}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	close(sink)
	total, batches, next := 0, 0, uint64(1)
	for b := range sink {
		batches++
		if size := proto.Size(b); size > protocol.MaxPayloadBytes {
			t.Errorf("batch %d encodes to %d bytes, over the %d limit", b.GetSeqFirst(), size, protocol.MaxPayloadBytes)
		}
		if b.GetSeqFirst() != next {
			t.Errorf("batch seq_first = %d, want %d", b.GetSeqFirst(), next)
		}
		next += uint64(len(b.GetPoints()))
		total += len(b.GetPoints())
	}
	if total != n || batches < 4 {
		t.Errorf("%d points in %d batches, want %d points in at least 4", total, batches, n)
	}
}

// TestSeqSurvivesRestart runs two batchers one after the other on the same
// data directory, as two runs of the agent would.
func TestSeqSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), SeqFileName)
	var maxSeen uint64
	for run := range 2 {
		seq, err := OpenSeq(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		sink := make(chanSink, 10)
		in, stop := start(t, Options{MaxPoints: 2, MaxDelay: time.Hour, Seq: seq, Sink: sink})
		for i := range 5 {
			in <- point(i)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		close(sink)
		for b := range sink {
			if b.GetSeqFirst() <= maxSeen {
				t.Fatalf("run %d reused seq %d (highest before: %d)", run, b.GetSeqFirst(), maxSeen)
			}
			maxSeen = b.GetSeqFirst() + uint64(len(b.GetPoints())) - 1
		}
	}
	if maxSeen <= DefaultSeqBlock {
		t.Errorf("highest seq after restart = %d, want above the first reserved block (%d)", maxSeen, DefaultSeqBlock)
	}
}

func TestSinkErrorStopsRun(t *testing.T) {
	seq, _ := OpenSeq(filepath.Join(t.TempDir(), SeqFileName), 0)
	b, err := New(Options{MaxPoints: 1, MaxDelay: time.Second, Seq: seq, Sink: failSink{}})
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan *outpostv1.Point, 1)
	in <- point(0)
	err = b.Run(context.Background(), in)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Run = %v, want the sink's error", err)
	}
}

func TestRunStopsOnContext(t *testing.T) {
	sink := make(chanSink, 1)
	seq, _ := OpenSeq(filepath.Join(t.TempDir(), SeqFileName), 0)
	b, _ := New(Options{MaxPoints: 10, MaxDelay: time.Hour, Seq: seq, Sink: sink})
	in := make(chan *outpostv1.Point, 1)
	in <- point(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, in) }()
	testutil.Eventually(t, 5*time.Second, func() error {
		if len(in) != 0 {
			return fmt.Errorf("point not read yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := receive(t, sink); len(got.GetPoints()) != 1 {
		t.Fatalf("flushed batch = %v, want the one point", got)
	}
	if st := b.Stats(); st.Batches != 1 || st.Points != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Options{MaxPoints: 0})
	if err == nil {
		t.Fatal("New = nil error")
	}
	for _, want := range []string{"max points", "max delay", "no sequence", "no sink"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
