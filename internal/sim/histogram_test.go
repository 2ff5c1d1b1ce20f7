package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// exactSummary is the nearest-rank summary of ds, to compare with.
func exactSummary(ds []time.Duration) PublishLatency {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	rank := func(p float64) time.Duration { return s[nearestRank(p, uint64(len(s)))-1] }
	return PublishLatency{Count: uint64(len(s)), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99),
		Max: s[len(s)-1], Mean: sum / time.Duration(len(s))}
}

func TestHistogramPercentiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		gen  func(i int) time.Duration
		n    int
	}{
		{"one value", func(int) time.Duration { return 7 * time.Millisecond }, 1},
		{"1..100ms", func(i int) time.Duration { return time.Duration(100-i) * time.Millisecond }, 100},
		{"exact below 128ns", func(i int) time.Duration { return time.Duration(i % 128) }, 1000},
		{"uniform 1µs..1s", func(int) time.Duration { return time.Microsecond + time.Duration(rng.Int64N(int64(time.Second))) }, 100_000},
		{"log-normal around 3ms", func(int) time.Duration {
			return time.Duration(3e6 * math.Exp(rng.NormFloat64()))
		}, 100_000},
		{"bimodal with a slow tail", func(i int) time.Duration {
			if i%50 == 0 {
				return 2*time.Second + time.Duration(rng.Int64N(int64(time.Second)))
			}
			return 500*time.Microsecond + time.Duration(rng.Int64N(int64(time.Millisecond)))
		}, 50_000},
		{"huge", func(i int) time.Duration { return math.MaxInt64 - time.Duration(i) }, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			ds := make([]time.Duration, tc.n)
			for i := range ds {
				ds[i] = tc.gen(i)
				h.Record(ds[i])
			}
			got, want := h.Summary(), exactSummary(ds)
			if got.Count != want.Count || got.Max != want.Max {
				t.Errorf("count %d max %s, want %d and %s", got.Count, got.Max, want.Count, want.Max)
			}
			if tc.name != "huge" && got.Mean != want.Mean { // the sum overflows for "huge"
				t.Errorf("mean %s, want %s", got.Mean, want.Mean)
			}
			for _, p := range []struct {
				name      string
				got, want time.Duration
			}{{"p50", got.P50, want.P50}, {"p90", got.P90, want.P90}, {"p99", got.P99, want.P99}} {
				if rel := math.Abs(float64(p.got-p.want)) / float64(p.want); rel > HistogramRelativeError {
					t.Errorf("%s = %s, exact %s: off by %.3f%%, more than %.3f%%", p.name, p.got, p.want, 100*rel, 100*HistogramRelativeError)
				}
			}
			if got.P50 > got.P90 || got.P90 > got.P99 || got.P99 > got.Max {
				t.Errorf("percentiles out of order: %+v", got)
			}
		})
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	var h Histogram
	if s := h.Summary(); s != (PublishLatency{}) {
		t.Errorf("empty histogram: %+v", s)
	}
	h.Record(-time.Second)
	if s := h.Summary(); s.Count != 1 || s.Max != 0 || s.P99 != 0 {
		t.Errorf("a negative duration must count as 0: %+v", s)
	}
}

// TestHistogramBuckets checks that the buckets tile every int64 in order:
// each value falls in the bucket whose bounds hold it, and each bucket
// starts right after the one before.
func TestHistogramBuckets(t *testing.T) {
	var prevHi uint64
	for i := range histBuckets {
		lo, hi := histBounds(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, the one before ends at %d", i, lo, prevHi)
		}
		for _, v := range []uint64{lo, lo + (hi-lo)/2, hi} {
			if got := histIndex(v); got != i {
				t.Fatalf("value %d in bucket %d, want %d [%d, %d]", v, got, i, lo, hi)
			}
		}
		if lo >= 2*histSub {
			if w := hi - lo + 1; float64(w)/2/float64(lo) > HistogramRelativeError {
				t.Fatalf("bucket %d [%d, %d] is too wide for the stated error", i, lo, hi)
			}
		}
		prevHi = hi
	}
	if prevHi != math.MaxInt64 {
		t.Errorf("the last bucket ends at %d, want MaxInt64", prevHi)
	}
}

// TestHistogramConcurrent records from many goroutines while summaries
// are taken; run with -race. Nothing may be lost.
func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	const writers, each = 8, 5000
	var wg sync.WaitGroup
	done := make(chan struct{})
	var readerWG sync.WaitGroup
	readerWG.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				if s := h.Summary(); s.Count > 0 && s.P99 > s.Max {
					t.Errorf("p99 %s above max %s", s.P99, s.Max)
					return
				}
			}
		}
	})
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				h.Record(time.Duration(w*each+i+1) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	close(done)
	readerWG.Wait()
	s := h.Summary()
	n := writers * each
	if s.Count != uint64(n) || s.Max != time.Duration(n)*time.Microsecond {
		t.Errorf("count %d max %s, want %d and %s", s.Count, s.Max, n, time.Duration(n)*time.Microsecond)
	}
	if want := time.Duration(n+1) * time.Microsecond / 2; s.Mean != want {
		t.Errorf("mean %s, want %s", s.Mean, want)
	}
	if want := time.Duration(n/2) * time.Microsecond; math.Abs(float64(s.P50-want))/float64(want) > HistogramRelativeError {
		t.Errorf("p50 %s, want %s within %.2f%%", s.P50, want, 100*HistogramRelativeError)
	}
}

// BenchmarkHistogramRecord is the cost of one Record from many
// goroutines at once, as a fleet's devices do.
func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(rand.Int64N(int64(time.Second)))
		for pb.Next() {
			h.Record(d)
			d = (d*31 + 7) % time.Second
		}
	})
}
