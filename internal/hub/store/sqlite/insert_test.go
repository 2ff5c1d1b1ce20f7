package sqlite

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// These tests are internal to see insertChunk, the row count at which
// InsertPoints splits a batch into statements.

// insertT0 is a fixed, millisecond-aligned instant the tests count from.
var insertT0 = time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)

func openInsertStore(t *testing.T, devices ...string) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	for _, id := range devices {
		if err := s.CreateDevice(t.Context(), store.Device{ID: id, CreatedAt: insertT0}); err != nil {
			t.Fatalf("CreateDevice(%s): %v", id, err)
		}
	}
	return s
}

func storedSeqs(t *testing.T, s *Store, dev string) []uint64 {
	t.Helper()
	pts, err := s.Points(t.Context(), store.PointQuery{DeviceID: dev, Since: time.UnixMilli(0), Until: insertT0.Add(1000 * time.Hour), Limit: 1 << 30})
	if err != nil {
		t.Fatalf("Points(%s): %v", dev, err)
	}
	out := make([]uint64, len(pts))
	for i, p := range pts {
		out[i] = p.Seq
	}
	slices.Sort(out)
	return out
}

// seqPoint is a numeric point of dev whose timestamp follows its seq.
func seqPoint(dev string, seq uint64) store.Point {
	return store.Point{DeviceID: dev, Seq: seq, Sensor: "temp", TS: insertT0.Add(time.Duration(seq) * time.Millisecond), Kind: store.KindNum, Num: float64(seq)}
}

func TestInsertPointsCountsAcrossChunks(t *testing.T) {
	devs := []string{"a", "b"}
	for _, n := range []int{1, insertChunk - 1, insertChunk, insertChunk + 1, 3*insertChunk + 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := openInsertStore(t, devs...)
			ctx := t.Context()
			stored := map[string]map[uint64]bool{}
			for _, d := range devs {
				stored[d] = map[uint64]bool{}
			}
			// insert stores batch and checks that InsertPoints counts the
			// points whose (device, seq) was not stored before the call and
			// appears first in it.
			insert := func(name string, batch []store.Point) {
				t.Helper()
				want := 0
				for _, p := range batch {
					if !stored[p.DeviceID][p.Seq] {
						stored[p.DeviceID][p.Seq] = true
						want++
					}
				}
				if got, err := s.InsertPoints(ctx, batch, insertT0); err != nil || got != want {
					t.Fatalf("%s: InsertPoints(%d points) = %d, %v; want %d", name, len(batch), got, err, want)
				}
			}

			// n distinct points, alternating devices, so that both devices
			// hold the same seqs.
			fresh := make([]store.Point, n)
			for i := range fresh {
				fresh[i] = seqPoint(devs[i%2], uint64(i/2+1))
			}
			insert("fresh", fresh)
			insert("redelivery", fresh)

			// Each seq twice in a row, offset by one so that the pairs
			// straddle every chunk boundary, starting at seqs the first
			// call stored.
			mixed := make([]store.Point, n)
			base := uint64(n/4 + 1)
			for i := range mixed {
				mixed[i] = seqPoint("a", base+uint64((i+1)/2))
			}
			insert("duplicates within and across calls", mixed)
			insert("mixed redelivery", append(slices.Clone(mixed), fresh...))

			for _, d := range devs {
				var want []uint64
				for seq := range stored[d] {
					want = append(want, seq)
				}
				slices.Sort(want)
				if got := storedSeqs(t, s, d); !slices.Equal(got, want) {
					t.Errorf("%s seqs = %v, want %v", d, got, want)
				}
				if c, err := s.CountPoints(ctx, d); err != nil || c != len(want) {
					t.Errorf("CountPoints(%s) = %d, %v; want %d", d, c, err, len(want))
				}
			}
		})
	}
}

func TestInsertPointsValueKindsRoundTrip(t *testing.T) {
	values := []store.Point{
		{Kind: store.KindNum, Num: 21.5},
		{Kind: store.KindStr, Str: "open ✓"},
		{Kind: store.KindFlag, Flag: true},
		{Kind: store.KindNum, Num: -1e-9},
		{Kind: store.KindStr, Str: ""},
		{Kind: store.KindFlag, Flag: false},
		{Kind: store.KindNum, Num: 0},
	}
	s := openInsertStore(t, "dev")
	// More than a chunk, so that every kind lands in several statements and
	// at several places in them.
	batch := make([]store.Point, 2*insertChunk+3)
	for i := range batch {
		p := values[i%len(values)]
		p.DeviceID, p.Seq, p.Sensor = "dev", uint64(i+1), fmt.Sprintf("s%d", i%5)
		p.TS = insertT0.Add(time.Duration(i) * time.Second)
		batch[i] = p
	}
	if n, err := s.InsertPoints(t.Context(), batch, insertT0); err != nil || n != len(batch) {
		t.Fatalf("InsertPoints = %d, %v; want %d", n, err, len(batch))
	}
	got, err := s.Points(t.Context(), store.PointQuery{DeviceID: "dev", Since: insertT0, Until: insertT0.Add(time.Hour), Limit: 1 << 20})
	if err != nil {
		t.Fatalf("Points: %v", err)
	}
	if !reflect.DeepEqual(got, batch) {
		t.Errorf("Points() differs from what was inserted:\ngot  %+v\nwant %+v", got, batch)
	}
}

func TestInsertPointsFailureStoresNothing(t *testing.T) {
	n := 3*insertChunk + 5
	for _, bad := range []int{0, insertChunk, n - 1} {
		t.Run(fmt.Sprintf("bad point %d of %d", bad, n), func(t *testing.T) {
			s := openInsertStore(t, "dev")
			ctx := t.Context()
			batch := make([]store.Point, n)
			for i := range batch {
				batch[i] = seqPoint("dev", uint64(i+1))
			}
			batch[bad].Kind = 0
			if got, err := s.InsertPoints(ctx, batch, insertT0); err == nil {
				t.Fatalf("InsertPoints with a point without a value kind = %d, nil; want an error", got)
			}
			if c, err := s.CountPoints(ctx, "dev"); err != nil || c != 0 {
				t.Errorf("CountPoints after a refused batch = %d, %v; want 0", c, err)
			}
			if d, err := s.Device(ctx, "dev"); err != nil || !d.LastSeen.IsZero() {
				t.Errorf("Device after a refused batch: LastSeen = %v, %v; want zero", d.LastSeen, err)
			}

			// The same batch, repaired, is stored whole and moves last_seen:
			// the refused call left neither rows nor a remembered last_seen.
			batch[bad].Kind = store.KindNum
			if got, err := s.InsertPoints(ctx, batch, insertT0); err != nil || got != n {
				t.Fatalf("repaired InsertPoints = %d, %v; want %d", got, err, n)
			}
			if c, err := s.CountPoints(ctx, "dev"); err != nil || c != n {
				t.Errorf("CountPoints = %d, %v; want %d", c, err, n)
			}
			if d, err := s.Device(ctx, "dev"); err != nil || !d.LastSeen.Equal(insertT0) {
				t.Errorf("Device: LastSeen = %v, %v; want %v", d.LastSeen, err, insertT0)
			}
		})
	}
}
