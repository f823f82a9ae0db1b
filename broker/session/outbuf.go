package session

import (
	"github.com/warrenmq/warren/amqp"
)

// Large bodies go out by reference: their body frames' headers and end octets are encoded into
// the outbound buffer as usual, and the body bytes are written straight from the message
// (writev on TCP), not copied into the buffer. A 128 MiB delivery then costs no second 128 MiB
// (nor the garbage of growing the buffer to hold it). Smaller bodies are copied: for them one
// copy is cheaper than an extra piece to write.

// refBodyMin is the smallest body sent by reference.
const refBodyMin = 64 << 10

// outRef is a piece of a body written from the message at out[at] (the bytes after it in out
// follow it on the wire).
type outRef struct {
	at   int
	body []byte
}

// appendContentLocked appends a content header and body frames for body to the outbound
// buffer (outMu held); a large body is referenced, not copied.
func (c *Conn) appendContentLocked(channel uint16, props, body []byte) {
	if len(body) < refBodyMin {
		c.out = amqp.AppendContent(c.out, channel, props, body, c.frameMax)
		return
	}
	c.out = amqp.AppendContentHeader(c.out, channel, uint64(len(body)), props)
	chunk := len(body)
	if c.frameMax > 8 && int(c.frameMax-8) < chunk {
		chunk = int(c.frameMax - 8)
	}
	c.refBytes += len(body)
	for len(body) > 0 {
		n := min(chunk, len(body))
		c.out = append(c.out, amqp.FrameBody, byte(channel>>8), byte(channel), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		c.refs = append(c.refs, outRef{at: len(c.out), body: body[:n]})
		c.out = append(c.out, amqp.FrameEnd)
		body = body[n:]
	}
}

// writeOut writes buf with the referenced bodies spliced in; it returns the bytes written.
// Called under wmu.
func (c *Conn) writeOut(buf []byte, refs []outRef) (int, error) {
	if len(refs) == 0 {
		return c.write(buf)
	}
	segs := c.segs[:0]
	prev := 0
	for _, r := range refs {
		if r.at > prev {
			segs = append(segs, buf[prev:r.at])
		}
		segs = append(segs, r.body)
		prev = r.at
	}
	if prev < len(buf) {
		segs = append(segs, buf[prev:])
	}
	var n int
	var err error
	if c.pacer.raw != nil {
		n, err = c.pacer.sysWritev(segs)
	} else {
		n, err = c.writeCoalesced(segs)
	}
	clear(segs) // do not keep the bodies alive
	c.segs = segs[:0]
	return n, err
}

// writeCoalesced writes segs through a bounded scratch buffer (TLS, pipes: connections
// without vectored raw writes), so that small pieces do not become small writes or records.
func (c *Conn) writeCoalesced(segs [][]byte) (int, error) {
	const scratchSize = 256 << 10
	if c.scratch == nil {
		c.scratch = make([]byte, 0, scratchSize)
	}
	total := 0
	b := c.scratch[:0]
	flush := func() error {
		n, err := c.write(b)
		total += n
		b = b[:0]
		return err
	}
	for _, s := range segs {
		for len(s) > 0 {
			k := min(len(s), scratchSize-len(b))
			b = append(b, s[:k]...)
			s = s[k:]
			if len(b) == scratchSize {
				if err := flush(); err != nil {
					return total, err
				}
			}
		}
	}
	if len(b) > 0 {
		if err := flush(); err != nil {
			return total, err
		}
	}
	return total, nil
}

// takeOutLocked hands the outbound buffer and its references to a writer (outMu held) and
// starts a new buffer on spare.
func (c *Conn) takeOutLocked(spare []byte, spareRefs []outRef) ([]byte, []outRef) {
	buf, refs := c.out, c.refs
	c.out, c.refs, c.refBytes = spare, spareRefs, 0
	return buf, refs
}
