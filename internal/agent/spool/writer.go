package spool

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// Append stores points and returns nil once the transaction holding them
// is committed and synced: from then on they survive a crash or a power
// cut. Their seqs follow the order of the slice; points of concurrent
// Appends are numbered in the order the writer takes the calls. Append may
// be called from many goroutines at once; the writer groups the calls
// (see Options.CommitInterval).
//
// When ctx ends first Append returns ctx.Err(), and the points are stored
// or not: not, if the writer had not taken them yet. With OverflowBlock,
// Append waits for room; points that could never fit fail with
// ErrTooLarge. Append fails with ErrStopped once Run has returned.
func (s *Spool) Append(ctx context.Context, points []*outpostv1.Point) error {
	if len(points) == 0 {
		return nil
	}
	o := &op{recs: make([][]byte, 0, len(points)), done: make(chan error, 1)}
	for _, p := range points {
		rec, err := encodeRecord(p)
		if err != nil {
			return fmt.Errorf("encoding a point for the spool: %w", err)
		}
		o.recs = append(o.recs, rec)
		o.cost += recordCost(len(rec))
	}
	if s.lim().Overflow == OverflowBlock && o.cost > s.lim().MaxBytes {
		return fmt.Errorf("appending %d points (%d bytes) to a spool of %d bytes: %w", len(points), o.cost, s.lim().MaxBytes, ErrTooLarge)
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.state == stopped:
		s.mu.Unlock()
		return ErrStopped
	}
	s.markPending()
	s.appends = append(s.appends, o)
	s.pendingPoints += len(o.recs)
	full := s.pendingPoints >= s.opts.CommitPoints
	s.mu.Unlock()
	notify(s.wake)
	if full {
		notify(s.full)
	}

	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
	}
	s.mu.Lock()
	if o.state == opPending {
		o.state = opAbandoned
		s.pendingPoints -= len(o.recs)
		s.mu.Unlock()
		return ctx.Err()
	}
	s.mu.Unlock()
	return <-o.done // being committed: the outcome is moments away
}

// Delete removes the waiting points with seqs first to last, inclusive
// (those that exist), because they were delivered or refused for good. It
// returns once that is committed. Until then ReadBatch may still return
// them. Delete works also after Run has returned, until Close.
func (s *Spool) Delete(ctx context.Context, first, last uint64) error {
	if last < first {
		return nil
	}
	o := &op{first: first, last: last, done: make(chan error, 1)}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.state == stopped:
		s.mu.Unlock()
		s.commit(nil, []*op{o})
		return <-o.done
	}
	s.markPending()
	s.deletes = append(s.deletes, o)
	s.mu.Unlock()
	notify(s.wake)
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the deletion still happens
	}
}

// markPending starts the commit window when the first op arrives; s.mu is
// held.
func (s *Spool) markPending() {
	if len(s.appends) == 0 && len(s.deletes) == 0 {
		s.pendingSince = time.Now()
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run is the writer: it commits the pending Appends and Deletes in groups
// and enforces MaxAge, until ctx is done. Then it commits what is pending
// (with OverflowBlock, Appends that do not fit fail with ErrStopped) and
// returns nil. It may be called once.
func (s *Spool) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("spool: Run called twice")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.state = running
	s.mu.Unlock()

	// The expiry tick runs even without a max age: SetLimits may set one.
	tickEvery := time.Second
	if a := s.lim().MaxAge; a > 0 {
		tickEvery = min(max(a/10, 10*time.Millisecond), time.Second)
	}
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	tick := t.C
	window := time.NewTimer(time.Hour)
	window.Stop()
	defer window.Stop()
	for {
		if ctx.Err() != nil {
			s.stop()
			return nil
		}
		if !s.ready() {
			select {
			case <-ctx.Done():
				s.stop()
				return nil
			case <-s.wake:
			case <-tick:
				if s.expiryDue() {
					s.commit(nil, nil)
				}
			}
			continue
		}
		if s.opts.CommitInterval > 0 {
			select {
			case <-s.full: // stale: the window starts now
			default:
			}
			// The window runs from the first pending op's arrival, which
			// may have been during the previous commit.
			if wait := s.windowLeft(); wait > 0 {
				window.Reset(wait)
				select {
				case <-window.C:
				case <-s.full:
					window.Stop()
				case <-ctx.Done():
					window.Stop()
				}
			}
		}
		if appends, deletes := s.take(); len(appends) > 0 || len(deletes) > 0 {
			s.commit(appends, deletes)
		}
	}
}

// ready reports whether there is something the writer can commit now.
func (s *Spool) ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.deletes) > 0 {
		return true
	}
	for len(s.appends) > 0 && s.appends[0].state == opAbandoned {
		s.appends[0] = nil
		s.appends = s.appends[1:]
	}
	if len(s.appends) == 0 {
		return false
	}
	return s.lim().Overflow != OverflowBlock || s.appends[0].cost <= s.lim().MaxBytes-s.bytes
}

// windowLeft returns how much longer the writer waits for more ops: 0
// once CommitPoints points are pending.
func (s *Spool) windowLeft() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pendingPoints >= s.opts.CommitPoints {
		return 0
	}
	return s.opts.CommitInterval - time.Since(s.pendingSince)
}

func (s *Spool) expiryDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	maxAge := s.lim().MaxAge
	return maxAge > 0 && s.oldest != 0 && s.oldest < s.opts.Now().Add(-maxAge).UnixMilli()
}

// take removes what the next commit stores from the pending lists: every
// Delete and, in order, the Appends that fit (all of them unless
// OverflowBlock).
func (s *Spool) take() (appends, deletes []*op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	deletes, s.deletes = s.deletes, nil
	room := s.lim().MaxBytes - s.bytes
	i := 0
	for ; i < len(s.appends); i++ {
		o := s.appends[i]
		if o.state == opAbandoned {
			continue
		}
		if s.lim().Overflow == OverflowBlock && o.cost > room {
			break
		}
		room -= o.cost
		o.state = opTaken
		s.pendingPoints -= len(o.recs)
		appends = append(appends, o)
	}
	s.appends = append(s.appends[:0:0], s.appends[i:]...)
	s.pendingSince = time.Now() // for those left waiting for room
	return appends, deletes
}

// stop ends the writer: what is pending is committed, or refused.
func (s *Spool) stop() {
	s.mu.Lock()
	s.state = stopped
	pending, deletes := s.appends, s.deletes
	s.appends, s.deletes, s.pendingPoints = nil, nil, 0
	room := s.lim().MaxBytes - s.bytes
	var appends, refused []*op
	for _, o := range pending {
		switch {
		case o.state == opAbandoned:
		case s.lim().Overflow == OverflowBlock && o.cost > room:
			refused = append(refused, o)
		default:
			room -= o.cost
			o.state = opTaken
			appends = append(appends, o)
		}
	}
	s.mu.Unlock()
	for _, o := range refused {
		o.done <- ErrStopped
	}
	if len(appends) > 0 || len(deletes) > 0 {
		s.commit(appends, deletes)
	}
}

// commit stores appends and applies deletes, the overflow policy and
// MaxAge in one transaction, then tells every op the outcome.
func (s *Spool) commit(appends, deletes []*op) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	appendErr, err := s.commitLocked(appends, deletes)
	for _, o := range appends {
		o.done <- errors.Join(appendErr, err)
	}
	for _, o := range deletes {
		o.done <- err
	}
}

// commitLocked runs one write transaction; commitMu is held. appendErr
// fails only the Appends (their numbers could not be reserved); err fails
// everything.
func (s *Spool) commitLocked(appends, deletes []*op) (appendErr, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	next, count, bytes, dropped := s.next, s.count, s.bytes, s.dropped
	s.mu.Unlock()

	var n uint64
	for _, o := range appends {
		n += uint64(len(o.recs))
	}
	if n > 0 && next+n > s.ceiling {
		ceiling := next + n + s.opts.SeqBlock
		switch {
		case ceiling > maxSeq:
			appendErr = errors.New("storing points: the sequence numbers are exhausted")
		default:
			if appendErr = writeFloor(s.opts.SeqFloorPath, ceiling); appendErr == nil {
				s.ceiling = ceiling
			}
		}
		if appendErr != nil {
			s.log.Error("cannot reserve sequence numbers; points are not stored", "err", appendErr)
			appends, n = nil, 0
			if len(deletes) == 0 {
				return appendErr, nil
			}
		}
	}

	start := time.Now()
	now := s.opts.Now()
	nowMs := now.UnixMilli()
	var (
		nDeleted, nOverflow, nExpired uint64
		first                         uint64
		oldest                        int64
	)
	err = s.db.Update(func(tx *bolt.Tx) error {
		pts, meta := tx.Bucket(bucketPoints), tx.Bucket(bucketMeta)
		// Points are appended at the end, so full pages waste nothing.
		pts.FillPercent = 1
		for _, d := range deletes {
			k, c, err := removeRange(pts, d.first, d.last)
			if err != nil {
				return err
			}
			nDeleted += uint64(k)
			count -= k
			bytes -= c
		}
		keys := make([]byte, keyLen*n)
		for _, o := range appends {
			for _, rec := range o.recs {
				k := keys[:keyLen:keyLen]
				keys = keys[keyLen:]
				putKey(k, next)
				seal(k, rec, nowMs)
				if err := pts.Put(k, rec); err != nil {
					return err
				}
				next++
				count++
				bytes += recordCost(len(rec))
			}
		}
		if n > 0 {
			if err := meta.Put(keyNextSeq, u64(next)); err != nil {
				return err
			}
		}
		if s.lim().Overflow == OverflowDropOldest && bytes > s.lim().MaxBytes {
			excess := bytes - s.lim().MaxBytes
			k, c, err := removeHead(pts, func(v []byte) bool {
				if excess <= 0 {
					return false
				}
				excess -= recordCost(len(v))
				return true
			})
			if err != nil {
				return err
			}
			nOverflow = uint64(k)
			count -= k
			bytes -= c
		}
		if s.lim().MaxAge > 0 {
			cutoff := now.Add(-s.lim().MaxAge).UnixMilli()
			k, c, err := removeHead(pts, func(v []byte) bool { return len(v) >= headerLen && storedAt(v) < cutoff })
			if err != nil {
				return err
			}
			nExpired = uint64(k)
			count -= k
			bytes -= c
		}
		if nOverflow+nExpired > 0 {
			dropped += nOverflow + nExpired
			if err := meta.Put(keyDropped, u64(dropped)); err != nil {
				return err
			}
		}
		if k, v := pts.Cursor().First(); k != nil {
			first, oldest = seqOf(k), storedAt(v)
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("committing to the spool: %w", err)
		s.log.Error("spool commit failed", "points", n, "deletes", len(deletes), "err", err)
		return appendErr, err
	}
	s.commits.Add(1)
	s.commitNanos.Add(int64(time.Since(start)))
	s.appendsN.Add(uint64(len(appends)))
	s.appendedPoints.Add(n)
	s.deleted.Add(nDeleted)
	s.expired.Add(nExpired)

	s.mu.Lock()
	s.next, s.count, s.bytes, s.dropped = next, count, bytes, dropped
	s.first, s.oldest = first, oldest
	if nOverflow+nExpired > 0 {
		s.unloggedDrops += nOverflow + nExpired
		if wall := time.Now(); wall.Sub(s.lastDropLog) >= dropLogEvery {
			s.log.Warn("spool dropped undelivered points", "dropped", s.unloggedDrops, "dropped_total", s.dropped,
				"overflow_now", nOverflow, "expired_now", nExpired, "max_bytes", s.lim().MaxBytes, "max_age", s.lim().MaxAge,
				"note", "logged at most every 10s")
			s.lastDropLog, s.unloggedDrops = wall, 0
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return appendErr, nil
}

// removeRange deletes the records with seqs first..last and returns how
// many there were and what they cost.
func removeRange(b *bolt.Bucket, first, last uint64) (n, cost int64, err error) {
	var keys []byte
	c := b.Cursor()
	from := make([]byte, keyLen)
	putKey(from, first)
	for k, v := c.Seek(from); k != nil && seqOf(k) <= last; k, v = c.Next() {
		keys = append(keys, k...)
		n++
		cost += recordCost(len(v))
	}
	return n, cost, deleteKeys(b, keys)
}

// removeHead deletes records from the oldest on while more returns true
// for them, and returns how many and what they cost.
func removeHead(b *bolt.Bucket, more func(v []byte) bool) (n, cost int64, err error) {
	var keys []byte
	c := b.Cursor()
	for k, v := c.First(); k != nil && more(v); k, v = c.Next() {
		keys = append(keys, k...)
		n++
		cost += recordCost(len(v))
	}
	return n, cost, deleteKeys(b, keys)
}

// deleteKeys deletes the concatenated 8-byte keys. Keys are collected
// first because deleting under a cursor can make it skip the next key.
func deleteKeys(b *bolt.Bucket, keys []byte) error {
	for i := 0; i < len(keys); i += keyLen {
		if err := b.Delete(keys[i : i+keyLen]); err != nil {
			return err
		}
	}
	return nil
}
