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

// ExpirationMillis parses the expiration property: ok false when absent; err when malformed
// (RabbitMQ rejects a non-integer or negative expiration with PRECONDITION_FAILED).
func (m *Message) ExpirationMillis() (ms int64, ok bool, err error) {
	if m.Props.Flags&amqp.FlagExpiration == 0 {
		return 0, false, nil
	}
	s := string(m.Props.Expiration)
	// As RabbitMQ (string:to_integer): a leading integer, nothing after it, not negative.
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == i {
		return 0, true, amqp.ChannelErr(amqp.PreconditionFailed, "invalid expiration '%s': no_integer", s)
	}
	v, err := strconv.ParseInt(s[:j], 10, 64)
	if err != nil {
		return 0, true, amqp.ChannelErr(amqp.PreconditionFailed, "invalid expiration '%s': no_integer", s)
	}
	if j < len(s) {
		return 0, true, amqp.ChannelErr(amqp.PreconditionFailed, "invalid expiration '%s': {leftover_string,\"%s\"}", s, s[j:])
	}
	if v < 0 {
		return 0, true, amqp.ChannelErr(amqp.PreconditionFailed, "invalid expiration '%s': {value_negative,%d}", s, v)
	}
	return v, true, nil
}
