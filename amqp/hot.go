package amqp

import "encoding/binary"

// AppendBasicDeliver appends a basic.deliver method frame without building a method value
// (the per-delivery hot path; it does not allocate when b has room).
func AppendBasicDeliver(b []byte, channel uint16, consumerTag string, deliveryTag uint64, redelivered bool, exchange, routingKey string) []byte {
	start := len(b)
	b = append(b, FrameMethod, byte(channel>>8), byte(channel), 0, 0, 0, 0, 0, 60, 0, 60)
	b = appendShortstr(b, consumerTag)
	b = appendUint64(b, deliveryTag)
	if redelivered {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendShortstr(b, exchange)
	b = appendShortstr(b, routingKey)
	binary.BigEndian.PutUint32(b[start+3:], uint32(len(b)-start-7))
	return append(b, FrameEnd)
}

// AppendBasicGetOk appends a basic.get-ok method frame.
func AppendBasicGetOk(b []byte, channel uint16, deliveryTag uint64, redelivered bool, exchange, routingKey string, messageCount uint32) []byte {
	start := len(b)
	b = append(b, FrameMethod, byte(channel>>8), byte(channel), 0, 0, 0, 0, 0, 60, 0, 71)
	b = appendUint64(b, deliveryTag)
	if redelivered {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendShortstr(b, exchange)
	b = appendShortstr(b, routingKey)
	b = appendUint32(b, messageCount)
	binary.BigEndian.PutUint32(b[start+3:], uint32(len(b)-start-7))
	return append(b, FrameEnd)
}

// AppendBasicAck appends a basic.ack (used for publisher confirms); nack when nack is true
// (requeue=false).
func AppendBasicAck(b []byte, channel uint16, deliveryTag uint64, multiple, nack bool) []byte {
	var m byte = 80
	var size byte = 13
	if nack {
		m = 120
	}
	b = append(b, FrameMethod, byte(channel>>8), byte(channel), 0, 0, 0, size, 0, 60, 0, m)
	b = appendUint64(b, deliveryTag)
	if multiple {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, FrameEnd)
}
