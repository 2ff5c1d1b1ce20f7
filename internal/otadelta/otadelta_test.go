package otadelta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// binaryLike returns n pseudo-random bytes with some repetition, standing
// in for an executable.
func binaryLike(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		if i >= 64 && r.IntN(4) == 0 {
			b[i] = b[i-64]
			continue
		}
		b[i] = byte(r.IntN(256))
	}
	return b
}

// patch returns a copy of old with a few small edits spread over it and a
// tail appended: a patch release.
func patch(old []byte) []byte {
	n := append([]byte(nil), old...)
	for i := 1000; i < len(n); i += len(n) / 7 {
		copy(n[i:], "version 1.0.1 — fixed")
	}
	return append(n, []byte("new tail section")...)
}

// header builds a zstd frame header: 8-byte content size, 4-byte
// dictionary id, and a window descriptor unless single is set.
func header(single bool, window byte, dictID uint32, fcs uint64) []byte {
	fhd := byte(3<<6 | 3)
	if single {
		fhd |= 1 << 5
	}
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, fhd}
	if !single {
		b = append(b, window)
	}
	b = binary.LittleEndian.AppendUint32(b, dictID)
	b = binary.LittleEndian.AppendUint64(b, fcs)
	// A last, empty raw block.
	return append(b, 1, 0, 0)
}

func TestRoundTrip(t *testing.T) {
	old := binaryLike(1, 3<<20)
	new := patch(old)
	delta, err := Encode(old, new)
	if err != nil {
		t.Fatal(err)
	}
	if ratio := float64(len(delta)) / float64(len(new)); ratio > 0.05 {
		t.Errorf("delta is %d bytes for %d bytes (%.1f %%); want a small patch", len(delta), len(new), 100*ratio)
	}
	var out bytes.Buffer
	n, err := Decode(bytes.NewReader(delta), old, &out, int64(len(new)))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(new)) || !bytes.Equal(out.Bytes(), new) {
		t.Fatalf("decoded %d bytes, equal %v", n, bytes.Equal(out.Bytes(), new))
	}
}

func TestDecodeRefuses(t *testing.T) {
	old := binaryLike(1, 256<<10)
	new := patch(old)
	delta, err := Encode(old, new)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(new))
	corrupt := append([]byte(nil), delta...)
	corrupt[len(corrupt)/2] ^= 0xff
	otherBase := append([]byte(nil), old...)
	otherBase[100] ^= 1
	for _, tc := range []struct {
		name  string
		delta []byte
		base  []byte
		size  int64
		want  error
	}{
		{"corrupt body", corrupt, old, size, ErrMalformed},
		{"truncated", delta[:len(delta)/2], old, size, ErrMalformed},
		{"empty", nil, old, size, ErrMalformed},
		{"not zstd", []byte("MZ not a zstd frame at all"), old, size, ErrMalformed},
		{"other base", delta, otherBase, size, ErrDictionary},
		{"smaller expected output", delta, old, size - 1, ErrTooLarge},
		{"larger expected output", delta, old, size + 1, ErrMalformed},
		// A frame announcing a terabyte: refused from its header, before
		// the decoder allocates anything.
		{"enormous content size", header(false, 10<<3, DictID(old), 1<<40), old, size, ErrTooLarge},
		{"enormous single segment", header(true, 0, DictID(old), 1<<40), old, size, ErrTooLarge},
		// The right content size with a 2 GiB window (exponent 21).
		{"enormous window", header(false, 21<<3, DictID(old), uint64(size)), old, size, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := Decode(bytes.NewReader(tc.delta), tc.base, &out, tc.size)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode: %v, want %v", err, tc.want)
			}
			if int64(out.Len()) > tc.size {
				t.Errorf("wrote %d bytes, more than the expected %d", out.Len(), tc.size)
			}
		})
	}
}

// TestDecoderMemoryCap checks the cap inside the decoder itself, below
// CheckHeader: a frame that lies about its size cannot make it allocate
// or write more than the expected size.
func TestDecoderMemoryCap(t *testing.T) {
	old := binaryLike(2, 64<<10)
	bomb, err := Encode(old, make([]byte, 64<<20)) // 64 MiB of zeros: a few KiB of delta
	if err != nil {
		t.Fatal(err)
	}
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	var out bytes.Buffer
	if _, err := Decode(bytes.NewReader(bomb), old, &out, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Decode of a 64 MiB frame expecting 1 MiB: %v, want ErrTooLarge", err)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %d bytes", out.Len())
	}
}

func TestDictID(t *testing.T) {
	a, b := DictID([]byte("a")), DictID([]byte("b"))
	if a == 0 || b == 0 || a == b || a&0x80000000 != 0 {
		t.Errorf("DictID: %x %x", a, b)
	}
}
