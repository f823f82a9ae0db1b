package queue

import (
	"encoding/binary"

	"github.com/warrenmq/warren/broker/message"
)

// recStream is the kind of a stream's log record (after recMessage and recDedupKey in
// record.go):
//
//	3 stream message: uvarint offset (the stream's, from 0), uvarint timestamp (unix ms, when
//	                  it was appended), then message.AppendEncoded's encoding
//
// The offset is stored because retention retires the oldest records: after a restart the
// stream continues from its own offsets, not from the position in the log.
const recStream = 3

func appendStreamRecord(b []byte, off uint64, ts int64, m *message.Message) []byte {
	b = append(b, recStream)
	b = binary.AppendUvarint(b, off)
	b = binary.AppendUvarint(b, uint64(ts))
	return message.AppendEncoded(b, m)
}

func decodeStreamRecord(rec []byte) (off uint64, ts int64, m *message.Message, err error) {
	if len(rec) < 1 || rec[0] != recStream {
		return 0, 0, nil, ErrBadRecord
	}
	off, n := binary.Uvarint(rec[1:])
	if n <= 0 {
		return 0, 0, nil, ErrBadRecord
	}
	rest := rec[1+n:]
	t, n := binary.Uvarint(rest)
	if n <= 0 {
		return 0, 0, nil, ErrBadRecord
	}
	m, err = message.Decode(rest[n:])
	if err != nil {
		return 0, 0, nil, err
	}
	return off, int64(t), m, nil
}
