package report

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// DefaultSeqBlock is how many sequence numbers Seq reserves with one write.
// At 10 Hz × 20 sensors that is one fsync every 50 seconds.
const DefaultSeqBlock = 10_000

// SeqFileName is the name of the reservation file in the data directory.
const SeqFileName = "seq"

// Seq hands out the device's sequence numbers, which must never repeat,
// not even across restarts or crashes. It is safe for concurrent use.
type Seq struct {
	path  string
	block uint64

	mu sync.Mutex // guards next and ceiling
	// next is the first number not handed out yet.
	next uint64
	// ceiling is the stored reservation: every number below it may have
	// been used by this or an earlier run.
	ceiling uint64
}

// OpenSeq reads the reservation file at path (a missing file means a new
// device, starting at 1) and returns a Seq that continues at the stored
// ceiling. block is how many numbers to reserve per write; 0 means
// DefaultSeqBlock. A corrupt file is an error, not a restart at 1.
func OpenSeq(path string, block uint64) (*Seq, error) {
	if block == 0 {
		block = DefaultSeqBlock
	}
	s := &Seq{path: path, block: block, next: 1, ceiling: 1}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("reading sequence reservation: %w", err)
	}
	c, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || c == 0 || c > math.MaxInt64 {
		return nil, fmt.Errorf("reading sequence reservation %s: content %q is not a sequence number; "+
			"do not delete it to recover: write a number larger than any seq the hub has seen from this device", path, truncate(data, 40))
	}
	s.next, s.ceiling = c, c
	return s, nil
}

// Next returns the number the next Reserve will start at.
func (s *Seq) Next() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// Reserve hands out n consecutive numbers and returns the first. When they
// reach past the stored ceiling it first stores a new ceiling n+block
// ahead, synced to disk; if that fails no number is handed out.
func (s *Seq) Reserve(n int) (uint64, error) {
	if n <= 0 {
		return 0, fmt.Errorf("reserving %d sequence numbers: need at least 1", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next > math.MaxInt64-uint64(n)-s.block {
		return 0, errors.New("reserving sequence numbers: the sequence is exhausted")
	}
	end := s.next + uint64(n) // first number not handed out by this call
	if end > s.ceiling {
		ceiling := end + s.block
		if err := atomicfile.Write(s.path, []byte(strconv.FormatUint(ceiling, 10)+"\n"), 0o600); err != nil {
			return 0, fmt.Errorf("reserving sequence numbers: %w", err)
		}
		s.ceiling = ceiling
	}
	first := s.next
	s.next = end
	return first, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
