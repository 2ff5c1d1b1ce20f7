package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkLayout walks the bbolt page tree of the file at path with plain
// reads, before bbolt maps the file, and checks that every page and every
// element it references lies inside the file. bbolt trusts these offsets,
// and its consistency check (tx.Check) follows them in a goroutine of its
// own, where a read outside the mapping is a fatal fault that no recover
// catches. A file that does not exist or is empty passes: bbolt creates
// it. The page layout is bbolt's on-disk format (version 2), which is
// stable; the byte order is the machine's.
func checkLayout(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	head := make([]byte, 128<<10)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	m, ok := newestMeta(head[:n])
	if !ok {
		return &corruptError{reason: "no valid bbolt meta page"}
	}
	w := &layoutWalker{r: f, size: fi.Size(), pageSize: uint64(m.pageSize), hwm: m.pgid, seen: map[uint64]bool{}}
	if m.pageSize < 512 || m.pageSize > 1<<20 || m.pageSize&(m.pageSize-1) != 0 {
		return &corruptError{reason: fmt.Sprintf("page size %d", m.pageSize)}
	}
	if m.pgid < 2 || m.pgid > uint64(fi.Size())/w.pageSize {
		return &corruptError{reason: fmt.Sprintf("the file is %d bytes but its pages reach to %d (truncated?)", fi.Size(), m.pgid*w.pageSize)}
	}
	if m.freelist != noFreelist {
		p, err := w.page(m.freelist)
		if err != nil {
			return err
		}
		if err := checkFreelist(p); err != nil {
			return err
		}
	}
	return w.tree(m.root)
}

// Page layout constants of bbolt's format.
const (
	pageHeaderLen = 16
	elemLen       = 16 // branch and leaf element headers alike
	branchFlag    = 0x01
	leafFlag      = 0x02
	freelistFlag  = 0x10
	bucketFlag    = 0x01 // of a leaf element
	noFreelist    = ^uint64(0)
)

// meta holds the fields of a bbolt meta page that matter here.
type meta struct {
	pageSize       uint32
	root, freelist uint64
	pgid, txid     uint64
}

// parseMeta reads and validates the meta page at off of buf: magic,
// version and checksum.
func parseMeta(buf []byte, off int) (meta, bool) {
	const (
		sumEnd  = 56 // offset of the checksum within the meta
		magic   = 0xED0CDAED
		version = 2
	)
	if off < 0 || off+pageHeaderLen+sumEnd+8 > len(buf) {
		return meta{}, false
	}
	b := buf[off+pageHeaderLen:]
	ne := binary.NativeEndian
	if ne.Uint32(b[0:4]) != magic || ne.Uint32(b[4:8]) != version {
		return meta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(b[:sumEnd])
	if h.Sum64() != ne.Uint64(b[sumEnd:]) {
		return meta{}, false
	}
	return meta{pageSize: ne.Uint32(b[8:12]), root: ne.Uint64(b[16:24]), freelist: ne.Uint64(b[32:40]),
		pgid: ne.Uint64(b[40:48]), txid: ne.Uint64(b[48:56])}, true
}

// bothMetas returns the two meta pages of buf, located like bbolt does:
// the second one page size after the first, whose size comes from the
// first, or the OS page size if that is damaged.
func bothMetas(buf []byte) (m0, m1 meta, ok0, ok1 bool) {
	m0, ok0 = parseMeta(buf, 0)
	ps := os.Getpagesize()
	if ok0 {
		ps = int(m0.pageSize)
	}
	m1, ok1 = parseMeta(buf, ps)
	return m0, m1, ok0, ok1
}

// newestMeta returns the meta bbolt uses: the valid one with the higher
// transaction id.
func newestMeta(buf []byte) (meta, bool) {
	m0, m1, ok0, ok1 := bothMetas(buf)
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		return m1, true
	case ok0:
		return m0, true
	}
	return meta{}, false
}

// metaDamaged reports whether one of the two meta pages of the file at
// path is invalid, which makes bbolt fall back to the previous
// transaction when it is the newer one.
func metaDamaged(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 128<<10)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	_, _, ok0, ok1 := bothMetas(buf[:n])
	return !ok0 || !ok1
}

// layoutWalker reads pages with ReadAt and remembers those it saw.
type layoutWalker struct {
	r        io.ReaderAt
	size     int64
	pageSize uint64
	hwm      uint64 // the first page id past the data
	seen     map[uint64]bool
}

// page reads page id with its overflow pages.
func (w *layoutWalker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, &corruptError{reason: fmt.Sprintf("page %d is out of range [2, %d)", id, w.hwm)}
	}
	if w.seen[id] {
		return nil, &corruptError{reason: fmt.Sprintf("page %d is referenced twice", id)}
	}
	w.seen[id] = true
	hdr := make([]byte, pageHeaderLen)
	if _, err := w.r.ReadAt(hdr, int64(id*w.pageSize)); err != nil {
		return nil, &corruptError{reason: fmt.Sprintf("reading page %d: %v", id, err)}
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(hdr); got != id {
		return nil, &corruptError{reason: fmt.Sprintf("page %d says it is page %d", id, got)}
	}
	overflow := uint64(ne.Uint32(hdr[12:16]))
	if id+overflow >= w.hwm {
		return nil, &corruptError{reason: fmt.Sprintf("page %d overflows past the data (%d pages)", id, overflow)}
	}
	buf := make([]byte, (overflow+1)*w.pageSize)
	if _, err := w.r.ReadAt(buf, int64(id*w.pageSize)); err != nil {
		return nil, &corruptError{reason: fmt.Sprintf("reading page %d: %v", id, err)}
	}
	return buf, nil
}

// tree checks the b+tree whose root is page id.
func (w *layoutWalker) tree(id uint64) error {
	p, err := w.page(id)
	if err != nil {
		return err
	}
	ne := binary.NativeEndian
	flags, count := ne.Uint16(p[8:10]), uint64(ne.Uint16(p[10:12]))
	switch flags {
	case branchFlag:
		if count == 0 {
			return &corruptError{reason: fmt.Sprintf("branch page %d is empty", id)}
		}
		for i := range count {
			e := pageHeaderLen + i*elemLen
			if e+elemLen > uint64(len(p)) {
				return &corruptError{reason: fmt.Sprintf("branch page %d: element %d lies outside the page", id, i)}
			}
			pos, ksize := uint64(ne.Uint32(p[e:])), uint64(ne.Uint32(p[e+4:]))
			if e+pos+ksize > uint64(len(p)) {
				return &corruptError{reason: fmt.Sprintf("branch page %d: key %d lies outside the page", id, i)}
			}
			if err := w.tree(ne.Uint64(p[e+8:])); err != nil {
				return err
			}
		}
		return nil
	case leafFlag:
		return w.leaf(p, fmt.Sprintf("leaf page %d", id))
	default:
		return &corruptError{reason: fmt.Sprintf("page %d has type %#x where a branch or leaf belongs", id, flags)}
	}
}

// leaf checks the elements of a leaf page (or an inline bucket's page) and
// the buckets they hold.
func (w *layoutWalker) leaf(p []byte, what string) error {
	ne := binary.NativeEndian
	if len(p) < pageHeaderLen || ne.Uint16(p[8:10]) != leafFlag {
		return &corruptError{reason: what + " is not a leaf"}
	}
	count := uint64(ne.Uint16(p[10:12]))
	for i := range count {
		e := pageHeaderLen + i*elemLen
		if e+elemLen > uint64(len(p)) {
			return &corruptError{reason: fmt.Sprintf("%s: element %d lies outside the page", what, i)}
		}
		flags := ne.Uint32(p[e:])
		pos, ksize, vsize := uint64(ne.Uint32(p[e+4:])), uint64(ne.Uint32(p[e+8:])), uint64(ne.Uint32(p[e+12:]))
		end := e + pos + ksize + vsize
		if end > uint64(len(p)) {
			return &corruptError{reason: fmt.Sprintf("%s: element %d lies outside the page", what, i)}
		}
		if flags&bucketFlag == 0 {
			continue
		}
		v := p[e+pos+ksize : end]
		if len(v) < 16 {
			return &corruptError{reason: fmt.Sprintf("%s: bucket %d is too short", what, i)}
		}
		if root := ne.Uint64(v); root != 0 {
			if err := w.tree(root); err != nil {
				return err
			}
		} else if err := w.leaf(v[16:], what+" inline bucket"); err != nil {
			return err
		}
	}
	return nil
}

// checkFreelist checks that a freelist page's ids lie inside the page.
func checkFreelist(p []byte) error {
	ne := binary.NativeEndian
	if ne.Uint16(p[8:10]) != freelistFlag {
		return &corruptError{reason: "the freelist page has the wrong type"}
	}
	count, start := uint64(ne.Uint16(p[10:12])), uint64(pageHeaderLen)
	if count == 0xFFFF { // the real count is the first element
		if len(p) < pageHeaderLen+8 {
			return &corruptError{reason: "the freelist page is too short"}
		}
		count, start = ne.Uint64(p[pageHeaderLen:]), pageHeaderLen+8
	}
	if count > (uint64(len(p))-start)/8 {
		return &corruptError{reason: "the freelist lies outside its pages"}
	}
	return nil
}
