package spool

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// needle is a sensor name that is easy to find in the file.
const needle = "needle-in-the-spool"

// pristine writes a spool with 200 points (the 100th named needle) in
// several commits, closes it and returns its bytes and page size.
func pristine(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SeqBlock: 10})
	for i := range 20 {
		ps := points(i*10, 10)
		if i == 9 {
			ps[9].Sensor = needle
		}
		appendOK(t, s, ps)
	}
	s.stop(t)
	data, err := os.ReadFile(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// reopen writes data as the spool file of a fresh directory whose seq
// floor says 211 (as the run that wrote data left it), opens it and
// returns the running spool.
func reopen(t *testing.T, data []byte) *testSpool {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spool.db"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FloorFileName), []byte("211\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return openSpool(t, dir, Options{})
}

func TestCorruptFileIsMovedAside(t *testing.T) {
	good := pristine(t)
	pageSize := os.Getpagesize()
	at := bytes.Index(good, []byte(needle))
	if at < 0 {
		t.Fatal("needle not found in the spool file")
	}
	leaf := at / pageSize * pageSize
	tests := []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }},
		{"truncated to a page", func(b []byte) []byte { return b[:pageSize] }},
		{"truncated to 100 bytes", func(b []byte) []byte { return b[:100] }},
		{"bit flipped in a point", func(b []byte) []byte { b[at+3] ^= 0x04; return b }},
		{"leaf page type flipped", func(b []byte) []byte { b[leaf+8] ^= 0x40; return b }},
		{"leaf page count inflated", func(b []byte) []byte { binary.NativeEndian.PutUint16(b[leaf+10:], 0xfff0); return b }},
		{"both meta pages zeroed", func(b []byte) []byte {
			clear(b[16:128])
			clear(b[pageSize+16 : pageSize+128])
			return b
		}},
		{"not a bbolt file", func(b []byte) []byte {
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := reopen(t, tt.corrupt(bytes.Clone(good)))
			checkFreshAfterCorruption(t, s, 211)
		})
	}
}

func TestUnexpectedContentIsCorrupt(t *testing.T) {
	for _, tt := range []struct {
		name  string
		write func(tx *bolt.Tx) error
	}{
		{"another program's database", func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("users"))
			return err
		}},
		{"a newer format", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyVersion, u64(formatVersion+1))
		}},
		{"a seq at or above next", func(tx *bolt.Tx) error {
			k := make([]byte, keyLen)
			putKey(k, 500)
			rec := mustRecordT(tx, point(1))
			seal(k, rec, 1)
			return tx.Bucket(bucketPoints).Put(k, rec)
		}},
		{"a missing bucket", func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketMeta) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "spool.db")
			if tt.name != "another program's database" {
				s := openSpool(t, dir, Options{})
				appendOK(t, s, points(0, 3))
				s.stop(t)
			}
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tt.write); err != nil {
				t.Fatal(err)
			}
			_ = db.Close()
			s := openSpool(t, dir, Options{})
			checkFreshAfterCorruption(t, s, 1)
		})
	}
}

func mustRecordT(_ *bolt.Tx, p *outpostv1.Point) []byte {
	rec, err := encodeRecord(p)
	if err != nil {
		panic(err)
	}
	return rec
}

// checkFreshAfterCorruption checks that s replaced a corrupt file: the
// old one is kept, the error is loud, the new spool is empty, works and
// numbers from at least minNext on.
func checkFreshAfterCorruption(t *testing.T, s *testSpool, minNext uint64) {
	t.Helper()
	st := s.Stats()
	if st.CorruptFile == "" || st.CorruptResets != 1 || st.Points != 0 {
		t.Fatalf("stats = %+v, want an empty spool after one corrupt-file reset", st)
	}
	if !strings.HasPrefix(filepath.Base(st.CorruptFile), "spool.db.corrupt-") {
		t.Errorf("moved to %s, want spool.db.corrupt-<time>", st.CorruptFile)
	}
	if _, err := os.Stat(st.CorruptFile); err != nil {
		t.Errorf("the corrupt file is not kept: %v", err)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "SPOOL FILE CORRUPT") {
		t.Errorf("no loud error logged:\n%s", logs)
	}
	next := s.NextSeq()
	if next < minNext {
		t.Errorf("the fresh spool starts at seq %d; numbers below %d may be at the hub already", next, minNext)
	}
	appendOK(t, s, points(0, 3))
	checkDense(t, readAll(t, s.Spool), next, next+2)
	s.stop(t)

	// The next start finds a healthy file and still counts the reset.
	s2 := openSpool(t, filepath.Dir(s.opts.Path), Options{})
	if st := s2.Stats(); st.CorruptFile != "" || st.CorruptResets != 1 || st.Points != 3 {
		t.Errorf("after restarting: %+v", st)
	}
}

// TestRandomBitFlipsNeverCrash flips random bits of a good spool file: Open
// must never crash or fail, must either move the file aside or deliver only
// points that were stored, and must never issue a seq that was issued
// before.
func TestRandomBitFlipsNeverCrash(t *testing.T) {
	good := pristine(t)
	original := map[float64]bool{}
	for i := range 200 {
		original[float64(i)] = true
	}
	r := rand.New(rand.NewPCG(42, uint64(len(good))))
	n, moved := 150, 0
	if testing.Short() {
		n = 30
	}
	if v, err := strconv.Atoi(os.Getenv("OUTPOST_SPOOL_FLIPS")); err == nil && v > 0 {
		n = v // a longer soak
	}
	for range n {
		data := bytes.Clone(good)
		for range 1 + r.IntN(3) {
			data[r.IntN(len(data))] ^= 1 << r.IntN(8)
		}
		s := reopen(t, data)
		if s.Stats().CorruptFile != "" {
			moved++
		} else {
			for _, p := range readAll(t, s.Spool) {
				if !original[p.value] || p.seq != uint64(p.value)+1 {
					t.Fatalf("a damaged file delivered seq %d = %v, which was never stored", p.seq, p.value)
				}
			}
		}
		if next := s.NextSeq(); next < 201 {
			t.Fatalf("next seq %d would reuse numbers", next)
		}
		appendOK(t, s, points(1000, 1))
		s.stop(t)
	}
	t.Logf("%d of %d damaged files were moved aside; the rest had the flips in unused space", moved, n)
}

// TestDamagedMetaPageContinuesAboveTheCeiling damages the newest of the
// two bbolt meta pages: bbolt falls back to the previous transaction,
// whose next seq is behind numbers already issued.
func TestDamagedMetaPageContinuesAboveTheCeiling(t *testing.T) {
	good := pristine(t)
	ps := os.Getpagesize()
	txid := func(off int) uint64 { return binary.NativeEndian.Uint64(good[off+16+48:]) }
	newest := 0
	if txid(ps) > txid(0) {
		newest = ps
	}
	data := bytes.Clone(good)
	data[newest+16+56] ^= 0xff // its checksum
	s := reopen(t, data)
	st := s.Stats()
	if st.CorruptFile != "" {
		t.Fatalf("moved aside: %+v; bbolt can use the previous transaction", st)
	}
	if st.NextSeq < 211 {
		t.Fatalf("next seq = %d after falling back a transaction; want at least the ceiling 211", st.NextSeq)
	}
	if !strings.Contains(s.logs.String(), "metadata page is damaged") {
		t.Errorf("no warning logged:\n%s", s.logs.String())
	}
}
