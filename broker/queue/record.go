package queue

import (
	"encoding/binary"

	"github.com/warrenmq/warren/broker/message"
)

// A queue log record is the message's expiry then the message:
//
//	expires  uvarint  unix milliseconds, 0 when the message never expires
//	message  the rest, message.AppendEncoded's encoding

// AppendLogRecord appends the log record of a message to b.
func AppendLogRecord(b []byte, m *message.Message, expires int64) []byte {
	b = binary.AppendUvarint(b, uint64(expires))
	return message.AppendEncoded(b, m)
}

// DecodeLogRecord parses a queue log record.
func DecodeLogRecord(rec []byte) (*message.Message, int64, error) {
	exp, n := binary.Uvarint(rec)
	if n <= 0 {
		return nil, 0, message.ErrBadRecord
	}
	m, err := message.Decode(rec[n:])
	if err != nil {
		return nil, 0, err
	}
	return m, int64(exp), nil
}
