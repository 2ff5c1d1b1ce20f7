package spool

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// ReadBatch returns the oldest waiting points with seq ≥ from (and
// < until, unless until is 0) as a batch of consecutive seqs: it ends
// before a gap, after maxPoints points, or before its points would encode
// to more than maxBytes (at least one point is always returned). It
// returns nil and no error when no such point waits. The points stay in
// the spool until Delete.
//
// A record that fails its checksum or does not decode is skipped and
// counted in Stats.Damaged; it ends a batch like a gap. Deleting from the
// requested from, rather than from the batch's SeqFirst, removes it.
func (s *Spool) ReadBatch(from, until uint64, maxPoints, maxBytes int) (*outpostv1.TelemetryBatch, error) {
	if maxPoints < 1 {
		return nil, fmt.Errorf("reading from the spool: max points must be at least 1, got %d", maxPoints)
	}
	var b *outpostv1.TelemetryBatch
	err := s.db.View(func(tx *bolt.Tx) error {
		b = nil
		c := tx.Bucket(bucketPoints).Cursor()
		start := make([]byte, keyLen)
		putKey(start, from)
		size := 0
		for k, v := c.Seek(start); k != nil; k, v = c.Next() {
			seq := seqOf(k)
			if until != 0 && seq >= until {
				break
			}
			if b != nil && seq != b.SeqFirst+uint64(len(b.Points)) {
				break
			}
			p := &outpostv1.Point{}
			if !validRecord(k, v) || proto.Unmarshal(v[headerLen:], p) != nil {
				if b != nil {
					break // the next read starts here and skips it
				}
				s.damaged.Add(1)
				s.log.Error("skipping a damaged point in the spool", "seq", seq)
				continue
			}
			cost := batchCost(v)
			if b != nil && size+cost > maxBytes {
				break
			}
			if b == nil {
				b = &outpostv1.TelemetryBatch{SeqFirst: seq, Points: make([]*outpostv1.Point, 0, min(maxPoints, 64))}
			}
			b.Points = append(b.Points, p)
			size += cost
			if len(b.Points) >= maxPoints {
				break
			}
		}
		return nil
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("reading from the spool: %w", err)
	}
	return b, nil
}
