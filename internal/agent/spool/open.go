package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket and key names. Bumping formatVersion makes older agents treat the
// file as corrupt rather than misread it.
var (
	bucketMeta   = []byte("meta")
	bucketPoints = []byte("points")

	keyVersion = []byte("version")
	keyNextSeq = []byte("next_seq")
	keyDropped = []byte("dropped")
	keyResets  = []byte("corrupt_resets")
)

const formatVersion = 1

// loaded is what the check of an existing file found.
type loaded struct {
	// fresh means the file has no spool in it yet.
	fresh        bool
	next         uint64
	dropped      uint64
	resets       uint64
	count, bytes int64
	first        uint64
	oldest       int64
}

// open opens the file, moving it aside when it is corrupt, and sets up the
// committed state and the seq ceiling.
func (s *Spool) open() error {
	path := s.opts.Path
	floor, floorErr := readFloor(s.opts.SeqFloorPath)
	if floorErr != nil {
		s.log.Error("the seq floor file is unreadable; it will be rewritten", "file", s.opts.SeqFloorPath, "err", floorErr)
	}

	db, st, err := openChecked(path)
	var ce *corruptError
	if errors.As(err, &ce) {
		moved, mvErr := moveAside(path, s.opts.Now())
		if mvErr != nil {
			return fmt.Errorf("opening spool %s: %w; and moving it aside failed: %w", path, err, mvErr)
		}
		s.corruptFile = moved
		s.log.Error("SPOOL FILE CORRUPT: moved it aside and started an empty spool; the points it held will not be delivered",
			"file", path, "moved_to", moved, "reason", ce.reason)
		db, st, err = openChecked(path)
		if err != nil {
			return fmt.Errorf("opening a fresh spool %s after moving a corrupt one aside: %w", path, err)
		}
	} else if err != nil {
		return fmt.Errorf("opening spool %s: %w", path, err)
	}
	s.db = db

	if st.fresh {
		st.next = max(floor, 1)
		if floorErr != nil {
			// Nothing tells which numbers were issued: start above any
			// count this device can have reached, derived from the clock.
			st.next = max(st.next, uint64(s.opts.Now().UnixMicro()))
			s.log.Error("starting a fresh spool without a usable seq floor; seqs continue from a clock-derived number", "next_seq", st.next)
		}
		st.resets = countCorrupt(path)
		if err := s.initFile(st); err != nil {
			_ = db.Close()
			return err
		}
	} else if metaDamaged(path) && floor > st.next {
		// bbolt fell back to the previous transaction, whose numbers the
		// lost one may have issued already.
		s.log.Warn("the spool's newest metadata page is damaged; continuing from the previous transaction with seqs above the reserved ceiling",
			"next_seq_in_file", st.next, "next_seq", floor)
		st.next = floor
		if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyNextSeq, u64(st.next)) }); err != nil {
			_ = db.Close()
			return fmt.Errorf("opening spool %s: %w", path, err)
		}
	}

	s.ceiling = floor
	if floorErr != nil || floor < st.next {
		// The floor file is missing, stale or unreadable: reserve again
		// before anything is issued.
		s.ceiling = st.next + s.opts.SeqBlock
		if err := writeFloor(s.opts.SeqFloorPath, s.ceiling); err != nil {
			_ = db.Close()
			return fmt.Errorf("opening spool %s: %w", path, err)
		}
	}

	s.next, s.dropped, s.corruptResets = st.next, st.dropped, st.resets
	s.count, s.bytes, s.first, s.oldest = st.count, st.bytes, st.first, st.oldest
	s.log.Info("spool open", "file", path, "points", st.count, "bytes", st.bytes, "next_seq", st.next,
		"dropped_total", st.dropped, "fresh", st.fresh)
	return nil
}

// initFile creates the buckets of a fresh spool.
func (s *Spool) initFile(st loaded) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketPoints); err != nil {
			return err
		}
		for k, v := range map[string]uint64{string(keyVersion): formatVersion, string(keyNextSeq): st.next, string(keyDropped): 0, string(keyResets): st.resets} {
			if err := m.Put([]byte(k), u64(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("initializing spool %s: %w", s.opts.Path, err)
	}
	return nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// guard runs fn, turning a panic, or a memory fault on the mapped file,
// into a corruptError: bbolt trusts the file's structure, and a damaged
// one makes it index out of range or read past the mapping.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &corruptError{reason: fmt.Sprintf("reading it panicked: %v", r)}
		}
	}()
	return fn()
}

// openChecked opens path with bbolt and checks everything in it. An error
// is a *corruptError when the file is damaged; other errors (permissions,
// a lock held by another process) are returned as they are.
func openChecked(path string) (*bolt.DB, loaded, error) {
	var (
		db *bolt.DB
		st loaded
	)
	err := guard(func() error {
		if err := checkLayout(path); err != nil {
			return err
		}
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
		if err != nil {
			if environmental(err) {
				return err
			}
			return &corruptError{reason: err.Error()}
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		// The scan touches every page of the tree in this goroutine, where
		// a fault is recovered, before tx.Check walks it in its own.
		if err := db.View(func(tx *bolt.Tx) error { return scan(tx, fi.Size(), &st) }); err != nil {
			return err
		}
		return db.View(func(tx *bolt.Tx) error {
			var first error
			for err := range tx.Check() {
				if first == nil {
					first = &corruptError{reason: "structure check: " + err.Error()}
				}
			}
			return first
		})
	})
	if err != nil {
		if db != nil {
			_ = guard(db.Close)
		}
		return nil, loaded{}, err
	}
	return db, st, nil
}

// environmental reports whether err from bolt.Open is about the
// environment rather than the file's content.
func environmental(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.Is(err, berrors.ErrTimeout) || errors.As(err, &pe) || errors.As(err, &errno)
}

// scan checks the spool's buckets and records and fills st.
func scan(tx *bolt.Tx, fileSize int64, st *loaded) error {
	if tx.Size() > fileSize {
		return &corruptError{reason: fmt.Sprintf("the file is %d bytes but its data reaches to %d (truncated?)", fileSize, tx.Size())}
	}
	meta, pts := tx.Bucket(bucketMeta), tx.Bucket(bucketPoints)
	if meta == nil && pts == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return &corruptError{reason: fmt.Sprintf("not a spool file (it holds %q)", truncate(k, 20))}
		}
		st.fresh = true
		return nil
	}
	if meta == nil || pts == nil {
		return &corruptError{reason: "a bucket is missing"}
	}
	get := func(k []byte, required bool) (uint64, error) {
		v := meta.Get(k)
		if v == nil && !required {
			return 0, nil
		}
		if len(v) != 8 {
			return 0, &corruptError{reason: fmt.Sprintf("meta key %s is damaged", k)}
		}
		return binary.BigEndian.Uint64(v), nil
	}
	version, err := get(keyVersion, true)
	if err != nil {
		return err
	}
	if version != formatVersion {
		return &corruptError{reason: fmt.Sprintf("unknown format version %d (this agent reads %d)", version, formatVersion)}
	}
	if st.next, err = get(keyNextSeq, true); err != nil {
		return err
	}
	if st.next == 0 || st.next > maxSeq {
		return &corruptError{reason: fmt.Sprintf("next seq %d is out of range", st.next)}
	}
	if st.dropped, err = get(keyDropped, false); err != nil {
		return err
	}
	if st.resets, err = get(keyResets, false); err != nil {
		return err
	}
	var prev uint64
	c := pts.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			return &corruptError{reason: "a nested bucket among the points"}
		}
		if !validRecord(k, v) {
			return &corruptError{reason: fmt.Sprintf("the record after seq %d fails its checksum", prev)}
		}
		seq := seqOf(k)
		if seq <= prev || seq >= st.next {
			return &corruptError{reason: fmt.Sprintf("seq %d is out of order (after %d, next %d)", seq, prev, st.next)}
		}
		if st.count == 0 {
			st.first, st.oldest = seq, storedAt(v)
		}
		st.count++
		st.bytes += recordCost(len(v))
		prev = seq
	}
	return nil
}

// moveAside renames a corrupt file to "<path>.corrupt-<unix time>" (with a
// counter if that exists) and returns the new name.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".corrupt-" + strconv.FormatInt(now.Unix(), 10)
	target := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
			break
		}
		target = base + "-" + strconv.Itoa(i)
	}
	if err := os.Rename(path, target); err != nil {
		return "", err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return target, nil
}

// countCorrupt counts the corrupt files moved aside next to path.
func countCorrupt(path string) uint64 {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return 0
	}
	prefix := filepath.Base(path) + ".corrupt-"
	var n uint64
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			n++
		}
	}
	return n
}
