package spool

import (
	"encoding/binary"
	"hash/crc32"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// A record is the value stored under a point's seq (8 bytes, big endian,
// so that byte order is seq order):
//
//	[0:8]   when the point was stored, Unix milliseconds, big endian
//	[8:12]  CRC-32C (Castagnoli) of key, [0:8] and [12:], big endian
//	[12:]   the point, protobuf-encoded
const (
	keyLen    = 8
	headerLen = 12
	// recordOverhead is what a point costs beyond its encoded size in the
	// MaxBytes accounting: key, header and bbolt's leaf element header.
	recordOverhead = keyLen + headerLen + 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeRecord returns the record of p with the header left to seal.
func encodeRecord(p *outpostv1.Point) ([]byte, error) {
	buf := make([]byte, headerLen, headerLen+proto.Size(p))
	return proto.MarshalOptions{}.MarshalAppend(buf, p)
}

// recordCost is how much a record of length n counts against MaxBytes.
func recordCost(n int) int64 { return int64(n - headerLen + recordOverhead) }

func putKey(dst []byte, seq uint64) { binary.BigEndian.PutUint64(dst, seq) }

func seqOf(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

// seal writes the header of rec for key k, stored at storedMs.
func seal(k, rec []byte, storedMs int64) {
	binary.BigEndian.PutUint64(rec[0:8], uint64(storedMs))
	binary.BigEndian.PutUint32(rec[8:12], checksum(k, rec))
}

func checksum(k, rec []byte) uint32 {
	c := crc32.Update(0, castagnoli, k)
	c = crc32.Update(c, castagnoli, rec[0:8])
	return crc32.Update(c, castagnoli, rec[headerLen:])
}

// validRecord reports whether key k and record v are intact.
func validRecord(k, v []byte) bool {
	return len(k) == keyLen && len(v) > headerLen && binary.BigEndian.Uint32(v[8:12]) == checksum(k, v)
}

// storedAt returns the time a record was stored, Unix milliseconds.
func storedAt(v []byte) int64 { return int64(binary.BigEndian.Uint64(v[0:8])) }

// batchCost is the size of a record's point as an element of
// TelemetryBatch.points.
func batchCost(v []byte) int {
	n := len(v) - headerLen
	return protowire.SizeTag(3) + protowire.SizeBytes(n)
}
