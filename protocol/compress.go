package protocol

import (
	"bytes"
	"errors"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// MaxDecompressedBytes bounds what a compressed payload may expand to, so a
// small "zip bomb" cannot make the hub allocate without limit.
const MaxDecompressedBytes = 4 * MaxPayloadBytes

// zstdMagic starts every zstd frame (RFC 8878). A telemetry payload that
// starts with it is decompressed before it is decoded; protobuf batches never
// start with these bytes (0x28 would be field 5, which TelemetryBatch lacks)
// and JSON starts with '{'.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
		if err != nil {
			panic("protocol: zstd encoder: " + err.Error()) // only bad options fail
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxDecompressedBytes),
			zstd.WithDecoderMaxWindow(MaxDecompressedBytes))
		if err != nil {
			panic("protocol: zstd decoder: " + err.Error())
		}
		return d
	})
)

// CompressZstd compresses an encoded payload (protobuf or JSON) into one zstd
// frame, which DecodeTelemetry recognises by its magic number. Batches of a
// few dozen points or more shrink several-fold.
func CompressZstd(payload []byte) []byte {
	return zstdEncoder().EncodeAll(payload, make([]byte, 0, len(payload)/2+16))
}

// IsZstd reports whether payload is a zstd frame.
func IsZstd(payload []byte) bool { return bytes.HasPrefix(payload, zstdMagic) }

func decompress(payload []byte) ([]byte, error) {
	out, err := zstdDecoder().DecodeAll(payload, nil)
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, errorf(CodeTooLarge, "compressed payload expands beyond %d bytes", MaxDecompressedBytes)
	case err != nil:
		return nil, errorf(CodeMalformed, "not a valid zstd frame: %v", err)
	case len(out) > MaxDecompressedBytes:
		return nil, errorf(CodeTooLarge, "compressed payload expands to %d bytes, the limit is %d", len(out), MaxDecompressedBytes)
	}
	return out, nil
}
