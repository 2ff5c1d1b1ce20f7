package otadelta

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"

	"github.com/klauspost/compress/zstd"
)

// Sentinel errors of Decode and CheckHeader.
var (
	// ErrMalformed: the delta is not a single zstd frame this package made.
	ErrMalformed = errors.New("malformed delta")
	// ErrDictionary: the delta was built against other bytes than the
	// dictionary given (the installed file differs from the old version).
	ErrDictionary = errors.New("delta was built against a different base file")
	// ErrTooLarge: the delta announces, or expands to, more than the
	// expected output size or window (a memory bomb).
	ErrTooLarge = errors.New("delta expands beyond the expected size")
)

// MaxInput bounds each of old and new for Encode. The window that lets the
// new artifact reach back to the start of the old one is old+new bytes,
// and zstd's largest window is zstd.MaxWindowSize (512 MiB).
const MaxInput = zstd.MaxWindowSize / 2

// DictID is the zstd dictionary id of base: 31 bits of its sha256 (never
// 0, which means "no dictionary"). A frame names the id of the base it was
// built against, so Decode tells a wrong base apart from a corrupt delta
// before decoding anything.
func DictID(base []byte) uint32 {
	sum := sha256.Sum256(base)
	id := binary.BigEndian.Uint32(sum[:4]) & 0x7fffffff
	if id == 0 {
		id = 1
	}
	return id
}

// windowFor is the encoder window that lets any byte of new refer to any
// byte of old: the next power of two of len(old)+len(new), within zstd's
// limits.
func windowFor(oldLen, newLen int) int {
	n := max(oldLen+newLen, zstd.MinWindowSize)
	w := 1 << bits.Len(uint(n-1))
	return min(w, zstd.MaxWindowSize)
}

// Encode returns the delta that turns old into new: one zstd frame (with
// content size and checksum) compressed at the best level with old as raw
// dictionary and a window covering old and new. klauspost's zstd has no
// long-distance matching mode, so the window is what makes matches reach
// the whole of old; old+new over zstd.MaxWindowSize still works but finds
// fewer matches, and inputs over MaxInput are refused.
func Encode(old, new []byte) ([]byte, error) {
	if len(old) == 0 || len(new) == 0 {
		return nil, errors.New("encoding delta: old and new must not be empty")
	}
	if len(old) > MaxInput || len(new) > MaxInput {
		return nil, fmt.Errorf("encoding delta: inputs over %d bytes", MaxInput)
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(windowFor(len(old), len(new))),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true),
		zstd.WithEncoderDictRaw(DictID(old), old))
	if err != nil {
		return nil, fmt.Errorf("creating delta encoder: %w", err)
	}
	defer enc.Close()
	return enc.EncodeAll(new, nil), nil
}

// headerPeek is how many bytes of a delta CheckHeader needs.
const headerPeek = 32

// CheckHeader checks the frame header at the start of delta (at least 32
// bytes, or all of a shorter delta): a single zstd frame
// built against base (by DictID), announcing exactly size bytes of output.
func CheckHeader(delta, base []byte, size int64) error {
	var h zstd.Header
	if err := h.Decode(delta); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case h.Skippable:
		return fmt.Errorf("%w: skippable frame", ErrMalformed)
	case !h.HasFCS:
		return fmt.Errorf("%w: the frame does not state its content size", ErrMalformed)
	case h.FrameContentSize != uint64(size):
		if h.FrameContentSize > uint64(size) {
			return fmt.Errorf("%w: the frame announces %d bytes, the signed size is %d", ErrTooLarge, h.FrameContentSize, size)
		}
		return fmt.Errorf("%w: the frame announces %d bytes, the signed size is %d", ErrMalformed, h.FrameContentSize, size)
	case !h.SingleSegment && h.WindowSize > maxWindow(size):
		return fmt.Errorf("%w: window of %d bytes for %d bytes of output", ErrTooLarge, h.WindowSize, size)
	case h.DictionaryID != DictID(base):
		return fmt.Errorf("%w: the frame names dictionary %d, the installed file is %d", ErrDictionary, h.DictionaryID, DictID(base))
	}
	return nil
}

// maxWindow is the largest window Decode accepts for size bytes of output.
// Encode writes single-segment frames (window = content size), so only a
// frame this package did not make needs more.
func maxWindow(size int64) uint64 { return max(uint64(size), zstd.MinWindowSize) }

// Decode writes to out the size bytes that delta (read to its end) encodes
// against base, and returns how many it wrote. The decoder's memory is
// capped by size: a frame announcing a larger output or window is refused
// before anything is allocated for it (ErrTooLarge), and so is one that
// expands past size while decoding. base is only read; it may be a
// read-only memory map. The caller still verifies the output against the
// signed hashes: the frame's own checksum is not a signature.
func Decode(delta io.Reader, base []byte, out io.Writer, size int64) (int64, error) {
	if size <= 0 {
		return 0, fmt.Errorf("%w: expected size %d", ErrMalformed, size)
	}
	// zstd.HeaderMaxSize (17) is one byte short of the largest frame
	// header (magic, descriptor, window, 4-byte dictionary id, 8-byte
	// content size); peek at more.
	hdr := make([]byte, headerPeek)
	n, err := io.ReadFull(delta, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("%w: empty", ErrMalformed)
		}
		return 0, fmt.Errorf("reading delta: %w", err)
	}
	hdr = hdr[:n]
	if err := CheckHeader(hdr, base, size); err != nil {
		return 0, err
	}
	dec, err := zstd.NewReader(io.MultiReader(bytes.NewReader(hdr), delta),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(uint64(size)),
		zstd.WithDecoderMaxWindow(maxWindow(size)),
		zstd.WithDecoderDictRaw(DictID(base), base))
	if err != nil {
		return 0, fmt.Errorf("creating delta decoder: %w", err)
	}
	defer dec.Close()
	written, err := io.Copy(outWriter{out}, io.LimitReader(dec, size+1))
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrFrameSizeExceeded):
		return written, fmt.Errorf("%w: %v", ErrTooLarge, err)
	case errors.Is(err, zstd.ErrUnknownDictionary):
		return written, fmt.Errorf("%w: %v", ErrDictionary, err)
	case err != nil:
		var we writeError
		if errors.As(err, &we) {
			return written, err
		}
		return written, fmt.Errorf("%w: %v", ErrMalformed, err)
	case written > size:
		return written, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, size)
	case written < size:
		return written, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, written, size)
	}
	return written, nil
}

// writeError marks a failure of Decode's out, which is the caller's (a full
// disk), not the delta's.
type writeError struct{ err error }

func (e writeError) Error() string { return "writing delta output: " + e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// outWriter tags the errors of w as writeError.
type outWriter struct{ w io.Writer }

func (o outWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil {
		err = writeError{err}
	}
	return n, err
}
