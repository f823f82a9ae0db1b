// Package message defines the broker's Message: an immutable published message shared by every
// queue it was routed to, holding the raw content properties exactly as the publisher sent them
// so that deliveries re-send them without re-encoding.
package message

import (
	"strconv"
	"time"

	"github.com/warrenmq/warren/amqp"
)

// Message is a published message. It is immutable once routed: queues share one *Message.
type Message struct {
	Exchange   string
	RoutingKey string
	RawProps   []byte // basic property flags and list as received
	Body       []byte
	Props      amqp.PropertySummary // aliases RawProps
	// Expires is the absolute expiry from the per-message expiration property (zero: none).
	Expires time.Time
}

// New builds a message. rawProps and body are kept (not copied): the caller hands them over.
func New(exchange, routingKey string, rawProps, body []byte) (*Message, error) {
	m := &Message{Exchange: exchange, RoutingKey: routingKey, RawProps: rawProps, Body: body}
	s, err := amqp.ScanProperties(rawProps)
	if err != nil {
		return nil, err
	}
	m.Props = s
	return m, nil
}

// Size is the message's accounted size in bytes (body plus properties), as RabbitMQ counts
// x-max-length-bytes (body only) — see BodySize.
func (m *Message) Size() int {
	return len(m.Body) + len(m.RawProps) + len(m.RoutingKey) + len(m.Exchange) + 64
}

// BodySize is the body length.
func (m *Message) BodySize() int { return len(m.Body) }

// Persistent reports delivery-mode 2.
func (m *Message) Persistent() bool { return m.Props.DeliveryMode == 2 }

// Headers decodes and returns the headers table; nil when absent.
func (m *Message) Headers() amqp.Table {
	if m.Props.Headers == nil {
		return nil
	}
	t, _, err := amqp.ReadTable(m.Props.Headers)
	if err != nil {
		return nil
	}
	return t
}

// MaxTTL is RabbitMQ's largest message TTL and queue expiry, in milliseconds (ten years):
// the limit of the expiration property, x-message-ttl and x-expires.
const MaxTTL = 315_360_000_000

// ExpirationMillis parses the expiration property: ok false when absent; err when malformed
// or out of range, with RabbitMQ's 406 PRECONDITION_FAILED texts (its parse is
// string:to_integer: an optional sign, digits, nothing after them; then 0 ≤ value ≤ MaxTTL).
// A value is refused, never cut: one past the int64 range must not wrap into a deadline in
// the past (issue 18).
func (m *Message) ExpirationMillis() (ms int64, ok bool, err error) {
	if m.Props.Flags&amqp.FlagExpiration == 0 {
		return 0, false, nil
	}
	s := string(m.Props.Expiration)
	prefix := func() string { return "invalid expiration '" + s + "': " } // errors only
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == i {
		return 0, true, amqp.ChannelErr(amqp.PreconditionFailed, "%sno_integer", prefix())
	}
	if j < len(s) {
		return 0, true, amqp.ChannelErr(amqp.PreconditionFailed, "%s", erlangPair(prefix(), "leftover_string", erlangList(s[j:])))
	}
	negative := s[0] == '-'
	v, perr := strconv.ParseInt(s[:j], 10, 64) // fails only beyond 64 bits: out of range either way
	switch {
	case negative && (perr != nil || v < 0):
		return 0, true, amqp.ChannelErr(amqp.PreconditionFailed, "%s", erlangPair(prefix(), "value_negative", erlangInteger(true, s[i:j])))
	case perr != nil || v > MaxTTL:
		return 0, true, amqp.ChannelErr(amqp.PreconditionFailed, "%s", erlangPair(prefix(), "value_too_large", erlangInteger(false, s[i:j])))
	}
	return v, true, nil
}
