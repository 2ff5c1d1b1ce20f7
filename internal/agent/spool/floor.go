package spool

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// The seq floor file holds one decimal number and a newline: a ceiling
// above every seq any spool of this device has issued. It is the format of
// the reservation file earlier agents kept in the same place ("seq" in the
// data directory), so an upgraded agent continues above their numbers.

// DefaultSeqBlock is how many numbers one write of the floor file reserves
// ahead. At 100,000 points a second that is one extra fsync a second; a
// corrupt-file reset skips at most this many numbers.
const DefaultSeqBlock = 100_000

// maxSeq keeps seq_first + points within what the protocol accepts.
const maxSeq = math.MaxInt64 - 1<<20

// readFloor returns the ceiling stored at path; 0 and nil when the file
// does not exist.
func readFloor(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading seq floor: %w", err)
	}
	c, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || c == 0 || c > maxSeq {
		return 0, fmt.Errorf("reading seq floor %s: content %q is not a sequence number", path, truncate(data, 40))
	}
	return c, nil
}

func writeFloor(path string, ceiling uint64) error {
	if err := atomicfile.Write(path, []byte(strconv.FormatUint(ceiling, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing seq floor: %w", err)
	}
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
