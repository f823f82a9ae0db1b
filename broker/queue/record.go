package queue

import (
	"encoding/binary"
	"errors"

	"github.com/warrenmq/warren/broker/message"
)

// A queue log record starts with its kind:
//
//	1 message:    uvarint expires (unix ms, 0: never), then message.AppendEncoded's encoding
//	2 dedup key:  uvarint seen (unix ms), then the key (x-message-deduplication: the window
//	              outlives the messages, so acked keys are kept as records of their own)
//	3 stream:     a stream queue's message (stream_record.go)
//	4 exchange dedup key: uvarint seen (unix ms), uvarint length of the exchange name, the
//	              name, then the key (an exchange's window outlives the messages it let
//	              through; the queues they reached keep their keys, see xdedup.go)
const (
	recMessage   = 1
	recDedupKey  = 2
	recXDedupKey = 4
)

// ErrBadRecord is returned for a queue log record that does not decode.
var ErrBadRecord = errors.New("queue: malformed log record")

// AppendLogRecord appends the log record of a message to b.
func AppendLogRecord(b []byte, m *message.Message, expires int64) []byte {
	b = append(b, recMessage)
	b = binary.AppendUvarint(b, uint64(expires))
	return message.AppendEncoded(b, m)
}

// DecodeLogRecord parses a message record.
func DecodeLogRecord(rec []byte) (*message.Message, int64, error) {
	if len(rec) < 1 || rec[0] != recMessage {
		return nil, 0, ErrBadRecord
	}
	exp, n := binary.Uvarint(rec[1:])
	if n <= 0 {
		return nil, 0, ErrBadRecord
	}
	m, err := message.Decode(rec[1+n:])
	if err != nil {
		return nil, 0, err
	}
	return m, int64(exp), nil
}

func appendKeyRecord(b []byte, key string, seen int64) []byte {
	b = append(b, recDedupKey)
	b = binary.AppendUvarint(b, uint64(seen))
	return append(b, key...)
}

func decodeKeyRecord(rec []byte) (string, int64, error) {
	if len(rec) < 1 || rec[0] != recDedupKey {
		return "", 0, ErrBadRecord
	}
	seen, n := binary.Uvarint(rec[1:])
	if n <= 0 {
		return "", 0, ErrBadRecord
	}
	return string(rec[1+n:]), int64(seen), nil
}

func appendXKeyRecord(b []byte, exchange, key string, seen int64) []byte {
	b = append(b, recXDedupKey)
	b = binary.AppendUvarint(b, uint64(seen))
	b = binary.AppendUvarint(b, uint64(len(exchange)))
	b = append(b, exchange...)
	return append(b, key...)
}

func decodeXKeyRecord(rec []byte) (exchange, key string, seen int64, err error) {
	if len(rec) < 1 || rec[0] != recXDedupKey {
		return "", "", 0, ErrBadRecord
	}
	rest := rec[1:]
	s, n := binary.Uvarint(rest)
	if n <= 0 {
		return "", "", 0, ErrBadRecord
	}
	rest = rest[n:]
	l, n := binary.Uvarint(rest)
	if n <= 0 || l > uint64(len(rest)-n) {
		return "", "", 0, ErrBadRecord
	}
	rest = rest[n:]
	return string(rest[:l]), string(rest[l:]), int64(s), nil
}

// RestoreRecord applies one live record of the queue's log at startup: a message is queued
// again (redelivered when it had been delivered), a deduplication key re-enters the window.
func (q *Queue) RestoreRecord(offset uint64, rec []byte, delivered bool) error {
	if q.stream != nil {
		return q.restoreStreamRecord(offset, rec)
	}
	if len(rec) > 0 && rec[0] == recDedupKey {
		key, seen, err := decodeKeyRecord(rec)
		if err != nil {
			return err
		}
		q.mu.Lock()
		q.dedup.restore(key, seen, offset, q.nowMs(), q.cfg)
		q.unlock()
		return nil
	}
	if len(rec) > 0 && rec[0] == recXDedupKey {
		exchange, key, seen, err := decodeXKeyRecord(rec)
		if err != nil {
			return err
		}
		if q.xkeys != nil {
			q.xkeys.RestoredKey(exchange, key, seen, q, offset)
		} else {
			q.RetireRecords(offset)
		}
		return nil
	}
	m, expires, err := DecodeLogRecord(rec)
	if err != nil {
		return err
	}
	q.Restore(m, offset, delivered, expires)
	if q.xkeys != nil && m.Exchange != "" {
		q.xkeys.RestoredMessage(m)
	}
	return nil
}
