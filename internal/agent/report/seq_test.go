package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeqStartsAtOneAndReservesAhead(t *testing.T) {
	path := filepath.Join(t.TempDir(), SeqFileName)
	s, err := OpenSeq(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("OpenSeq wrote the file before any number was used: %v", err)
	}
	for _, tt := range []struct {
		n         int
		wantFirst uint64
		wantFile  string
	}{
		{5, 1, "106\n"},     // 1..5 used; reserved up to 106
		{10, 6, "106\n"},    // 6..15, inside the reservation: no write
		{91, 16, "207\n"},   // 16..106 crosses the ceiling: a new block
		{1, 107, "207\n"},   // inside the new block
		{300, 108, "508\n"}, // a reservation larger than a block
	} {
		got, err := s.Reserve(tt.n)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.wantFirst {
			t.Errorf("Reserve(%d) = %d, want %d", tt.n, got, tt.wantFirst)
		}
		if data, _ := os.ReadFile(path); string(data) != tt.wantFile {
			t.Errorf("after Reserve(%d) the file holds %q, want %q", tt.n, data, tt.wantFile)
		}
	}
	if _, err := s.Reserve(0); err == nil {
		t.Error("Reserve(0) = nil error")
	}
}

// TestSeqNeverReusesAcrossRestarts simulates crashes: every run reserves
// some numbers and then is dropped without any shutdown step.
func TestSeqNeverReusesAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), SeqFileName)
	var last uint64
	for run := range 5 {
		s, err := OpenSeq(path, 7)
		if err != nil {
			t.Fatal(err)
		}
		for i := range run * 4 {
			n := 1 + (i*5+run)%9
			first, err := s.Reserve(n)
			if err != nil {
				t.Fatal(err)
			}
			if first <= last {
				t.Fatalf("run %d: Reserve(%d) = %d, but %d was already used", run, n, first, last)
			}
			last = first + uint64(n) - 1
		}
	}
	if last == 0 {
		t.Fatal("no numbers were reserved")
	}
}

func TestSeqRefusesCorruptFile(t *testing.T) {
	for _, content := range []string{"", "abc\n", "0\n", "-5\n", "99999999999999999999\n"} {
		path := filepath.Join(t.TempDir(), SeqFileName)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenSeq(path, 0)
		if err == nil || !strings.Contains(err.Error(), "is not a sequence number") {
			t.Errorf("OpenSeq with %q = %v, want a corrupt-file error", content, err)
		}
	}
}
