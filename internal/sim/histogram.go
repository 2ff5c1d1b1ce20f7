package sim

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram layout: durations below 2·histSub nanoseconds have a bucket
// each; above, every power of two is split into histSub buckets of equal
// width. A bucket [lo, lo+w) then has lo ≥ histSub·w, so reporting its
// midpoint is off by at most w/2 ≤ lo/(2·histSub): 1/128, under 0.8 %.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits // buckets per power of two
	// histBuckets covers every non-negative int64: the exact buckets
	// below 2·histSub, then histSub per bit length 8 to 63.
	histBuckets = 2*histSub + (63-histSubBits-1)*histSub
)

// HistogramRelativeError bounds how far a percentile of a Histogram is
// from the true nearest-rank percentile of the recorded durations,
// relative to it.
const HistogramRelativeError = 1.0 / (2 * histSub)

// Histogram records durations in fixed memory (about 30 KiB, whatever the
// count) with log-linear buckets: percentiles are within
// HistogramRelativeError of the exact ones; the count, mean and maximum
// are exact. The zero value is empty and ready. Its methods are safe for
// concurrent use: Record is a few atomic adds and takes no lock.
type Histogram struct {
	buckets [histBuckets]atomic.Uint64
	sum     atomic.Uint64 // nanoseconds
	max     atomic.Int64  // nanoseconds
}

// histIndex is the bucket of v nanoseconds (v ≥ 0).
func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1 // ≥ 1
	return 2*histSub + (shift-1)*histSub + int(v>>shift) - histSub
}

// histBounds is the range [lo, hi] of the durations in bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i)
	}
	shift := (i-2*histSub)/histSub + 1
	top := uint64((i-2*histSub)%histSub + histSub)
	lo = top << shift
	return lo, lo + 1<<shift - 1
}

// Record adds one duration; a negative one counts as 0.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.buckets[histIndex(uint64(v))].Add(1)
	h.sum.Add(uint64(v))
	for cur := h.max.Load(); v > cur && !h.max.CompareAndSwap(cur, v); cur = h.max.Load() {
	}
}

// PublishLatency summarizes the telemetry publishes at QoS 1 and 2 that
// the broker acknowledged: the time from the publish call to the PUBACK
// (QoS 1) or PUBCOMP (QoS 2), waiting for a free slot of the connection's
// in-flight window included. Against the hub's embedded broker that is the
// time until the batch is durably stored, since the hub acknowledges only
// after the commit. Publishes that failed or timed out are not in it; they
// are counted in Telemetry.Failed. The percentiles come from a Histogram
// and are within HistogramRelativeError of the exact ones; Max and Mean are
// exact.
type PublishLatency struct {
	Count uint64        `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
	Mean  time.Duration `json:"mean_ns"`
}

// Summary returns the count, percentiles (nearest rank), maximum and mean
// of what was recorded so far. Under concurrent Records it is a
// consistent-enough view: each bucket is read once.
func (h *Histogram) Summary() PublishLatency {
	var counts [histBuckets]uint64
	var n uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		n += counts[i]
	}
	if n == 0 {
		return PublishLatency{}
	}
	maxV := time.Duration(h.max.Load())
	l := PublishLatency{Count: n, Max: maxV, Mean: time.Duration(h.sum.Load() / n)}
	ranks := []struct {
		p   float64
		dst *time.Duration
	}{{0.50, &l.P50}, {0.90, &l.P90}, {0.99, &l.P99}}
	var seen uint64
	r := 0
	for i, c := range counts {
		if c == 0 {
			continue
		}
		seen += c
		for r < len(ranks) && seen >= nearestRank(ranks[r].p, n) {
			lo, hi := histBounds(i)
			// The midpoint, but never above the largest duration
			// recorded: the top bucket holds it.
			*ranks[r].dst = min(time.Duration(lo+(hi-lo)/2), maxV)
			r++
		}
		if r == len(ranks) {
			break
		}
	}
	return l
}

// nearestRank is the 1-based rank of percentile p of n values:
// ⌈p·n⌉, at least 1.
func nearestRank(p float64, n uint64) uint64 {
	k := uint64(p * float64(n))
	if float64(k) < p*float64(n) {
		k++
	}
	return max(k, 1)
}
