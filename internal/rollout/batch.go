package rollout

import (
	"fmt"
	"strconv"
	"strings"
)

// BatchSize is how many devices a batch holds: a percentage of the matching
// devices (rounded up) or a count. The zero value means one device.
type BatchSize struct {
	Percent float64 // in (0, 100]; used when Count is 0
	Count   int
}

// ParseBatchSize reads "10%" (a percentage of the matching devices) or "5"
// (a number of devices).
func ParseBatchSize(s string) (BatchSize, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(v > 0 && v <= 100) {
			return BatchSize{}, fmt.Errorf("batch size %q: want a percentage above 0%% and at most 100%%, e.g. 10%%", s)
		}
		return BatchSize{Percent: v}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return BatchSize{}, fmt.Errorf("batch size %q: want a number of devices (at least 1) or a percentage such as 10%%", s)
	}
	return BatchSize{Count: n}, nil
}

// String returns the form ParseBatchSize reads.
func (b BatchSize) String() string {
	if b.Count > 0 || b.Percent <= 0 {
		return strconv.Itoa(max(b.Count, 1))
	}
	return strconv.FormatFloat(b.Percent, 'f', -1, 64) + "%"
}

// Of returns the number of devices per batch for a group of n devices: at
// least 1 and at most n (for n > 0). Percentages round up, so 10% of 15
// devices is 2 and any percentage of 1 device is 1.
func (b BatchSize) Of(n int) int {
	if n <= 0 {
		return 0
	}
	size := 1
	switch {
	case b.Count > 0:
		size = b.Count
	case b.Percent > 0:
		// The small epsilon keeps 10% of 30 at 3, not 4, despite
		// floating-point error in 30*10/100.
		size = int(ceil(float64(n)*b.Percent/100 - 1e-9))
	}
	return min(max(size, 1), n)
}

func ceil(f float64) float64 {
	i := float64(int64(f))
	if f > i {
		return i + 1
	}
	return i
}

// split cuts ids into batches of size (the last may be smaller).
func split(ids []string, size int) [][]string {
	var out [][]string
	for len(ids) > 0 {
		k := min(size, len(ids))
		out = append(out, ids[:k:k])
		ids = ids[k:]
	}
	return out
}
