package spool

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/protocol"
)

// BenchmarkSpoolAppend measures durable appends with group commit: many
// sources append 10 points each, and every Append returns only once its
// points are committed and synced.
func BenchmarkSpoolAppend(b *testing.B) {
	s := openSpool(b, "", Options{CommitInterval: DefaultCommitInterval, CommitPoints: DefaultCommitPoints, MaxBytes: 1 << 40})
	const per = 10
	ps := points(0, per)
	b.SetParallelism(32) // 32 appenders per CPU
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Append(context.Background(), ps); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(float64(st.AppendedPoints)/float64(max(st.Commits, 1)), "points/commit")
	b.ReportMetric(float64(st.Commits)/b.Elapsed().Seconds(), "commits/s")
}

// BenchmarkSpoolDrain measures how fast a reader empties a full spool the
// way the uplink does: read a batch of 500, delete it (waiting for the
// commit), read the next.
func BenchmarkSpoolDrain(b *testing.B) {
	s := openSpool(b, "", Options{CommitInterval: DefaultCommitInterval, CommitPoints: DefaultCommitPoints, MaxBytes: 1 << 40})
	for i := 0; i < b.N; i += 1000 {
		appendOK(b, s, points(i, min(1000, b.N-i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	drained, from := 0, uint64(0)
	for drained < b.N {
		bt, err := s.ReadBatch(from, 0, 500, protocol.MaxPayloadBytes-128)
		if err != nil || bt == nil {
			b.Fatalf("ReadBatch = %v, %v after %d of %d points", bt, err, drained, b.N)
		}
		last := bt.SeqFirst + uint64(len(bt.Points)) - 1
		if err := s.Delete(ctx, from, last); err != nil {
			b.Fatal(err)
		}
		drained += len(bt.Points)
		from = last + 1
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
	if st := s.Stats(); st.Points != 0 {
		b.Fatalf("%d points left", st.Points)
	}
}
