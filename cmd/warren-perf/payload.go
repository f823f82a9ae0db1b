package main

import (
	"encoding/binary"

	amqp "github.com/rabbitmq/amqp091-go"
)

// tsHeader carries the send timestamp when the body is too small (< 8 bytes).
const tsHeader = "x-perf-ts"

// newBody allocates a message body of size bytes (contents beyond the
// timestamp are zero).
func newBody(size int) []byte { return make([]byte, size) }

// stamp writes the send timestamp (Unix nanoseconds) into msg: into the
// first 8 bytes of the body when it has room, else into a header.
func stamp(msg *amqp.Publishing, nowNs int64) {
	if len(msg.Body) >= 8 {
		binary.BigEndian.PutUint64(msg.Body, uint64(nowNs))
		return
	}
	msg.Headers = amqp.Table{tsHeader: nowNs}
}

// sendTime extracts the send timestamp written by stamp. ok is false when
// the message carries none (e.g. it was not published by this tool).
func sendTime(body []byte, headers amqp.Table) (ns int64, ok bool) {
	if len(body) >= 8 {
		v := int64(binary.BigEndian.Uint64(body))
		return v, v > 0
	}
	switch v := headers[tsHeader].(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case uint64:
		return int64(v), true
	}
	return 0, false
}
