package message

import (
	"encoding/binary"
	"errors"
)

// ErrBadRecord is returned by Decode for a record that is not a message encoding.
var ErrBadRecord = errors.New("message: malformed record")

// recordVersion is the first byte of the on-disk encoding, for future changes.
const recordVersion = 1

// AppendEncoded appends m's on-disk encoding (the payload of a queue log record) to b:
//
//	version  1 byte (1)
//	exchange 1-byte length + bytes
//	key      1-byte length + bytes
//	props    uvarint length + raw basic properties (as received)
//	body     the rest
func AppendEncoded(b []byte, m *Message) []byte {
	b = append(b, recordVersion)
	b = append(b, byte(len(m.Exchange)))
	b = append(b, m.Exchange...)
	b = append(b, byte(len(m.RoutingKey)))
	b = append(b, m.RoutingKey...)
	b = binary.AppendUvarint(b, uint64(len(m.RawProps)))
	b = append(b, m.RawProps...)
	return append(b, m.Body...)
}

// EncodedSize is the length of m's encoding.
func EncodedSize(m *Message) int {
	return 1 + 1 + len(m.Exchange) + 1 + len(m.RoutingKey) + binary.MaxVarintLen64 + len(m.RawProps) + len(m.Body)
}

// Decode parses an encoding made by AppendEncoded. The message does not alias rec.
func Decode(rec []byte) (*Message, error) { return decode(rec, false) }

// DecodeOwned is Decode for a record the caller hands over: the message's properties and body
// alias rec instead of a copy (a large message read back is not copied once more).
func DecodeOwned(rec []byte) (*Message, error) { return decode(rec, true) }

func decode(rec []byte, owned bool) (*Message, error) {
	if len(rec) < 3 || rec[0] != recordVersion {
		return nil, ErrBadRecord
	}
	p := rec[1:]
	n := int(p[0])
	if len(p) < 1+n+1 {
		return nil, ErrBadRecord
	}
	exchange := string(p[1 : 1+n])
	p = p[1+n:]
	n = int(p[0])
	if len(p) < 1+n {
		return nil, ErrBadRecord
	}
	key := string(p[1 : 1+n])
	p = p[1+n:]
	pl, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < pl {
		return nil, ErrBadRecord
	}
	data := p[k:]
	if !owned {
		data = append([]byte(nil), data...) // props and body in one allocation
	}
	m, err := New(exchange, key, data[:pl:pl], data[pl:len(data):len(data)])
	if err != nil {
		return nil, ErrBadRecord
	}
	return m, nil
}
