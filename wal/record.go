package wal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
)

// Kind is the type of a record, the first byte of its envelope.
type Kind uint8

// Record kinds. Zero is never valid, so a zeroed (torn) region never decodes as a record.
const (
	KindData      Kind = 1 // an opaque payload from Append (sealed by Config.Cipher when set)
	KindRetire    Kind = 2 // offsets whose data records are no longer live
	KindDelivered Kind = 3 // offsets whose data records were handed to a consumer
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindRetire:
		return "retire"
	case KindDelivered:
		return "delivered"
	}
	return "invalid"
}

// Record is one raw log record, as ReadRaw returns it and Config.OnAppend receives it.
type Record struct {
	Offset uint64
	Kind   Kind
	// Body is the record's content without the envelope: for KindData the stored payload
	// (ciphertext when Config.Cipher is set), for KindRetire and KindDelivered the encoded
	// offset list, which Offsets decodes.
	Body []byte
}

// Offsets decodes the offset list of a KindRetire or KindDelivered record. A void record (the
// place of a failed append) is a KindRetire record whose list is its own offset alone.
func (r Record) Offsets() ([]uint64, error) {
	if r.Kind != KindRetire && r.Kind != KindDelivered {
		return nil, errors.New("wal: record has no offset list")
	}
	var out []uint64
	err := forEachOffset(r.Body, func(o uint64) { out = append(out, o) })
	return out, err
}

// isVoid reports whether the body of a retire record at offset off makes it a void record: the
// place of an append whose write failed (see Log.faulted), a retire record naming its own offset
// only. Readers skip it: a retire record retires offsets below its own.
func isVoid(off uint64, body []byte) bool {
	o, n := binary.Uvarint(body)
	return n == len(body) && o == off
}

// headerSize is the envelope header: kind (1 byte) and CRC-32C (4 bytes, little endian).
const headerSize = 5

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// beginRecord appends an envelope header for kind k with a zero checksum; the caller appends the
// body and then calls finishRecord with the returned start.
func beginRecord(dst []byte, k Kind) ([]byte, int) {
	start := len(dst)
	return append(dst, byte(k), 0, 0, 0, 0), start
}

// finishRecord fills in the checksum of the record that begins at start and runs to the end of dst.
func finishRecord(dst []byte, start int) {
	binary.LittleEndian.PutUint32(dst[start+1:], recordCRC(dst[start], dst[start+headerSize:]))
}

// kindCRC holds the CRC-32C of each possible kind byte, the start of every record checksum
// (a one-byte slice passed to crc32 would escape and allocate on every record).
var kindCRC = func() (t [256]uint32) {
	for k := range t {
		t[k] = crc32.Checksum([]byte{byte(k)}, castagnoli)
	}
	return t
}()

func recordCRC(kind byte, body []byte) uint32 {
	return crc32.Update(kindCRC[kind], castagnoli, body)
}

// decodeRecord checks one envelope. It returns the kind and the body (aliasing rec), or a non-empty
// reason when the record is invalid.
func decodeRecord(rec []byte) (Kind, []byte, string) {
	if len(rec) < headerSize {
		return 0, nil, "short record"
	}
	k := Kind(rec[0])
	if k != KindData && k != KindRetire && k != KindDelivered {
		return 0, nil, "unknown record kind"
	}
	body := rec[headerSize:]
	if binary.LittleEndian.Uint32(rec[1:]) != recordCRC(rec[0], body) {
		return 0, nil, "checksum mismatch"
	}
	if k != KindData {
		if err := forEachOffset(body, nil); err != nil {
			return 0, nil, err.Error()
		}
	}
	return k, body, ""
}

// appendOffsets encodes a sorted, duplicate-free, non-empty list of offsets: the first as a uvarint,
// then each difference to its predecessor as a uvarint.
func appendOffsets(dst []byte, offs []uint64) []byte {
	var prev uint64
	for _, o := range offs {
		dst = binary.AppendUvarint(dst, o-prev)
		prev = o
	}
	return dst
}

var errBadOffsets = errors.New("wal: bad offset list")

// forEachOffset decodes an offset list, calling fn (when not nil) for each offset. The list must be
// non-empty and strictly increasing from at least 1.
func forEachOffset(body []byte, fn func(uint64)) error {
	if len(body) == 0 {
		return errBadOffsets
	}
	var prev uint64
	for len(body) > 0 {
		d, n := binary.Uvarint(body)
		if n <= 0 || d == 0 || d > math.MaxUint64-prev {
			return errBadOffsets
		}
		body = body[n:]
		prev += d
		if fn != nil {
			fn(prev)
		}
	}
	return nil
}
