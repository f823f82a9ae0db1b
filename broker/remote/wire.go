package remote

import (
	"encoding/binary"
	"errors"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/queue"
)

// The messages of the two topics, each a frame of the node bus: an op byte, then the op's
// fields, big-endian, strings with a u16 length, byte strings with a u32 length, the last
// byte string of a message (a body) taking the rest of the frame.
//
// To the queue's home (topicHome):
//
//	opOpen      ref, vhost, queue           ref names that queue until the link breaks
//	opPublish   ref, seq, exchange, key, props, body   (seq 0: nobody waits for an answer)
//	opSubscribe ref, sub, req, flags, priority, prefetch, credit, tag, args
//	opCancel    ref, sub                     (basic.cancel: Unsubscribe)
//	opCredit    ref, sub, n, bytes           (a window consumer took n deliveries; n is signed:
//	                                         a consumer bounded by its channel's prefetch follows it)
//	opHold      ref, sub, n, n × delivery id (the channel-wide prefetch holds the consumer back:
//	                                         these go back as never sent, send nothing more; opHeld)
//	opResume    ref, sub                     (the held consumer may take deliveries again)
//	opSettle    ref, how, n, n × delivery id
//	opUnsend    ref, n, n × delivery id      (deliveries that never reached their consumer)
//	opGet       ref, req, noAck
//	opPurge     ref, req
//	opDelete    ref, req, ifUnused, ifEmpty
//	opCounts    ref, req
//	opFigures   ref, req                     (management's counts and counters)
//	opTouch     ref
//	opClose     ref                          (the ref's queue is gone on the client)
//	opPing                                   (is the home back? it answers opPong)
//
// To the client (topicClient):
//
//	opAnswer    seq, status, error text      (a publish's final answer)
//	opWindow    bytes                        (publish bytes processed since the last one)
//	opReply     req, ok, (error | result)    (a request's answer)
//	opDeliver   sub, delivery id, offset, redelivered, returns, exchange, key, props, body
//	opCancelled sub                          (the queue cancelled the consumer: deleted)
//	opHeld      sub                          (the home holds the consumer: nothing of it follows)
//	opMoved     sub                          (the home no longer leads the replicated queue)
//	opUnknown   gen                          (the home does not know a ref: it lost the link)
//	opPong
const (
	topicHome   byte = 'q'
	topicClient byte = 'Q'
	topicReply  byte = 'y' // a direct reply-to reply for a channel on the receiving node: key, exchange, routing key, props, body

	opOpen      byte = 'o'
	opPublish   byte = 'p'
	opSubscribe byte = 's'
	opCancel    byte = 'u'
	opCredit    byte = 'k'
	opSettle    byte = 'a'
	opUnsend    byte = 'r'
	opGet       byte = 'g'
	opPurge     byte = 'x'
	opDelete    byte = 'D'
	opCounts    byte = 'c'
	opFigures   byte = 'f'
	opTouch     byte = 't'
	opClose     byte = 'C'
	opPing      byte = 'P'
	opHold      byte = 'h'
	opResume    byte = 'z'

	opAnswer    byte = 'A'
	opWindow    byte = 'W'
	opReply     byte = 'R'
	opDeliver   byte = 'd'
	opCancelled byte = 'X'
	opUnknown   byte = 'N'
	opPong      byte = 'O'
	opHeld      byte = 'H'
	opMoved     byte = 'M'
)

// Subscribe flags.
const (
	subExclusive byte = 1 << iota
	subNoAck
	subGlobalQos
	subSettleCredit // credit comes back with settlements (prefetch), not with opCredit
)

var errMalformed = errors.New("remote: malformed message")

func putU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
func putU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func putU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }

func putStr(b []byte, s string) []byte {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	b = putU16(b, uint16(len(s)))
	return append(b, s...)
}

func putBytes(b []byte, p []byte) []byte {
	b = putU32(b, uint32(len(p)))
	return append(b, p...)
}

func putBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// putErr appends an error as code, scope and text (code 0: not an AMQP error).
func putErr(b []byte, err error) []byte {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		b = putU16(b, uint16(ae.Code))
		b = append(b, byte(ae.Scope))
		return putStr(b, ae.Text)
	}
	b = putU16(b, 0)
	b = append(b, 0)
	return putStr(b, err.Error())
}

// reader decodes a message; a short message sets bad and yields zero values.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() byte {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *reader) bool() bool { return r.u8() != 0 }

func (r *reader) str() string { return string(r.take(int(r.u16()))) }

// bytes returns a byte string aliasing the message (the handler owns the payload).
func (r *reader) bytes() []byte {
	n := r.u32()
	if r.bad {
		return nil
	}
	if p := r.take(int(n)); p != nil {
		return p
	}
	return nil
}

// rest returns what is left, aliasing the message.
func (r *reader) rest() []byte {
	p := r.b
	r.b = nil
	return p
}

// err decodes an error written by putErr.
func (r *reader) err() error {
	code, scope, text := r.u16(), r.u8(), r.str()
	if code == 0 {
		return errors.New(text)
	}
	return &amqp.Error{Code: amqp.ReplyCode(code), Scope: amqp.Scope(scope), Text: text}
}

// pubSize is what a publish counts in the publish window: the message's accounted size
// (message.Message.Size), known on both sides before decoding.
func pubSize(exchange, key string, props, body []byte) int64 {
	return int64(len(body) + len(props) + len(key) + len(exchange) + 64)
}

// appendDelivery encodes an entry's delivery (opDeliver's fields after the op and sub, or a
// basic.get's result).
func appendEntry(b []byte, id uint64, e queue.Entry) []byte {
	b = putU64(b, id)
	b = putU64(b, e.Offset)
	b = putBool(b, e.Redelivered)
	b = putU32(b, e.Returns)
	m := e.Msg
	b = putStr(b, m.Exchange)
	b = putStr(b, m.RoutingKey)
	b = putBytes(b, m.RawProps)
	return append(b, m.Body...)
}

func appendFigures(b []byte, f queue.Figures) []byte {
	for _, v := range []uint64{uint64(f.Ready), uint64(f.Unacked), uint64(f.Consumers), uint64(f.ReadyBytes),
		uint64(f.PagedOut), uint64(f.PagedOutBytes), uint64(f.Memory), f.SpillLost,
		f.Published, f.Delivered, f.Redelivered, f.Acked, f.Gets, f.Duplicates,
		f.StreamFirst, f.StreamNext, uint64(f.StreamBytes)} {
		b = putU64(b, v)
	}
	return b
}

func readFigures(r *reader) queue.Figures {
	var f queue.Figures
	f.Ready, f.Unacked, f.Consumers, f.ReadyBytes = int(r.u64()), int(r.u64()), int(r.u64()), int64(r.u64())
	f.PagedOut, f.PagedOutBytes, f.Memory, f.SpillLost = int(r.u64()), int64(r.u64()), int64(r.u64()), r.u64()
	f.Published, f.Delivered, f.Redelivered, f.Acked, f.Gets, f.Duplicates = r.u64(), r.u64(), r.u64(), r.u64(), r.u64(), r.u64()
	f.StreamFirst, f.StreamNext, f.StreamBytes = r.u64(), r.u64(), int64(r.u64())
	return f
}
