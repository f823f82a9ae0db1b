package message

import (
	"time"

	"github.com/warrenmq/warren/amqp"
)

// DeadLettered returns the copy of m that a dead-letter exchange receives, with the x-death
// header RabbitMQ writes: a list of tables, most recent first, one per (queue, reason) with a
// count; x-first-death-reason/-queue/-exchange set once; the per-message expiration removed
// (and kept as original-expiration in the x-death entry). routingKey replaces the key when set.
func DeadLettered(m *Message, reason, queue, exchange string, routingKey *string, now time.Time) (*Message, error) {
	p, err := amqp.DecodeProperties(m.RawProps)
	if err != nil {
		return nil, err
	}
	h := amqp.Table{}
	for k, v := range p.Headers {
		h[k] = v
	}
	var deaths []any
	if d, ok := h["x-death"].([]any); ok {
		deaths = d
	}
	var entry amqp.Table
	rest := make([]any, 0, len(deaths)+1)
	for _, d := range deaths {
		t, ok := d.(amqp.Table)
		if ok && entry == nil && t["queue"] == queue && t["reason"] == reason {
			entry = amqp.Table{}
			for k, v := range t {
				entry[k] = v
			}
			continue
		}
		rest = append(rest, d)
	}
	if entry == nil {
		keys := []any{m.RoutingKey}
		if cc, ok := h["CC"].([]any); ok {
			keys = append(keys, cc...)
		}
		entry = amqp.Table{"count": int64(0), "reason": reason, "queue": queue, "exchange": m.Exchange,
			"routing-keys": keys}
		if p.Expiration != "" {
			entry["original-expiration"] = p.Expiration
		}
	}
	n, _ := entry["count"].(int64)
	entry["count"] = n + 1
	entry["time"] = now.Truncate(time.Second).UTC()
	h["x-death"] = append([]any{entry}, rest...)
	if _, ok := h["x-first-death-reason"]; !ok {
		h["x-first-death-reason"] = reason
		h["x-first-death-queue"] = queue
		h["x-first-death-exchange"] = m.Exchange
	}
	p.Headers = h
	p.Expiration = ""
	p.Flags &^= amqp.FlagExpiration
	key := m.RoutingKey
	if routingKey != nil {
		key = *routingKey
		delete(h, "CC") // as RabbitMQ: a replaced routing key drops the sender-selected ones
	}
	return New(exchange, key, p.AppendTo(nil), m.Body)
}

// DeathCycle reports whether delivering a dead-lettered message to queue would close a cycle
// that RabbitMQ breaks: the message already died in queue, and no death in its history was a
// rejection (only automatic reasons such as expiry or length).
func DeathCycle(m *Message, queue string) bool {
	deaths, _ := m.Headers()["x-death"].([]any)
	seen := false
	for _, d := range deaths {
		t, ok := d.(amqp.Table)
		if !ok {
			continue
		}
		if t["reason"] == "rejected" {
			return false
		}
		if t["queue"] == queue {
			seen = true
		}
	}
	return seen
}

// WithoutHeader returns a copy of m without the named header (BCC is never delivered).
func WithoutHeader(m *Message, name string) (*Message, error) {
	p, err := amqp.DecodeProperties(m.RawProps)
	if err != nil {
		return nil, err
	}
	if _, ok := p.Headers[name]; !ok {
		return m, nil
	}
	h := amqp.Table{}
	for k, v := range p.Headers {
		if k != name {
			h[k] = v
		}
	}
	p.Headers = h
	return New(m.Exchange, m.RoutingKey, p.AppendTo(nil), m.Body)
}
