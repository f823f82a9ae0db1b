package amqp

import (
	"encoding/binary"
	"time"
)

// Method is one AMQP method. The structs are generated (spec_gen.go).
type Method interface {
	ClassID() uint16
	MethodID() uint16
	Name() string
	HasContent() bool
	Synchronous() bool
	// AppendTo appends the method frame payload: class id, method id and arguments.
	AppendTo(b []byte) []byte
	decode(r *argReader)
}

// DecodeMethod decodes a method frame payload into a newly allocated method struct.
// Strings in the result do not alias payload.
func DecodeMethod(payload []byte) (Method, error) {
	var d Decoder
	d.noReuse = true
	return d.Decode(payload)
}

// Decoder decodes method frame payloads. It reuses the structs of the hot methods
// (basic.publish, basic.ack, basic.nack, basic.reject, basic.deliver): a method it returns is
// valid until the next Decode. Short strings are interned in a small per-decoder table, so
// decoding the common methods allocates nothing in steady state. A Decoder is not safe for
// concurrent use; the zero value is ready.
type Decoder struct {
	noReuse bool
	strs    map[string]string
	publish BasicPublish
	ack     BasicAck
	nack    BasicNack
	reject  BasicReject
	deliver BasicDeliver
	r       argReader // kept here so that the interface call to decode does not move it to the heap
}

// maxInterned bounds the intern table; it is cleared when full.
const maxInterned = 512

// Decode decodes a method frame payload (class id, method id, arguments).
func (d *Decoder) Decode(payload []byte) (Method, error) {
	if len(payload) < 4 {
		return nil, frameErr("method frame too short (%d bytes)", len(payload))
	}
	classID := binary.BigEndian.Uint16(payload)
	methodID := binary.BigEndian.Uint16(payload[2:])
	var m Method
	if !d.noReuse {
		switch uint32(classID)<<16 | uint32(methodID) {
		case uint32(ClassBasic)<<16 | 40:
			d.publish = BasicPublish{}
			m = &d.publish
		case uint32(ClassBasic)<<16 | 80:
			d.ack = BasicAck{}
			m = &d.ack
		case uint32(ClassBasic)<<16 | 120:
			d.nack = BasicNack{}
			m = &d.nack
		case uint32(ClassBasic)<<16 | 90:
			d.reject = BasicReject{}
			m = &d.reject
		case uint32(ClassBasic)<<16 | 60:
			d.deliver = BasicDeliver{}
			m = &d.deliver
		}
	}
	if m == nil {
		m = NewMethod(classID, methodID)
		if m == nil {
			return nil, &Error{Code: NotImplemented, ClassID: classID, MethodID: methodID, Scope: ScopeConnection,
				Text: "NOT_IMPLEMENTED - unknown method class " + itoa(int(classID)) + " method " + itoa(int(methodID))}
		}
	}
	d.r = argReader{b: payload[4:]}
	if !d.noReuse {
		if d.strs == nil {
			d.strs = make(map[string]string, 16)
		}
		d.r.strs = &d.strs
	}
	m.decode(&d.r)
	err := d.r.err
	if err == nil && len(d.r.b) > 0 {
		err = frameErr("%d unexpected bytes after the arguments of %s", len(d.r.b), m.Name())
	}
	// RabbitMQ's close for malformed UTF-8 names the method only on channel 0.
	named := !d.r.badUTF8 || classID == ClassConnection
	d.r = argReader{}
	if err != nil {
		if e, ok := err.(*Error); ok && named {
			e.ClassID, e.MethodID = classID, methodID
		}
		return nil, err
	}
	return m, nil
}

// argReader reads method arguments. Errors are sticky: after the first, every read returns
// a zero value and err holds the failure.
type argReader struct {
	b       []byte
	err     error
	bits    byte
	nbit    uint8 // bits left in the current bit octet
	badUTF8 bool  // err is malformed UTF-8 in a short string
	strs    *map[string]string
}

func (r *argReader) fail(what string) {
	if r.err == nil {
		r.err = frameErr("truncated %s in method arguments", what)
	}
	r.b = nil
}

func (r *argReader) startBits() { r.nbit = 0 }

func (r *argReader) bit() bool {
	if r.nbit == 0 {
		if len(r.b) < 1 {
			r.fail("bit")
			return false
		}
		r.bits = r.b[0]
		r.b = r.b[1:]
		r.nbit = 8
	}
	v := r.bits&1 != 0
	r.bits >>= 1
	r.nbit--
	return v
}

func (r *argReader) octet() uint8 {
	r.nbit = 0
	if len(r.b) < 1 {
		r.fail("octet")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *argReader) short() uint16 {
	r.nbit = 0
	if len(r.b) < 2 {
		r.fail("short")
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *argReader) long() uint32 {
	r.nbit = 0
	if len(r.b) < 4 {
		r.fail("long")
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *argReader) longlong() uint64 {
	r.nbit = 0
	if len(r.b) < 8 {
		r.fail("longlong")
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *argReader) timestamp() time.Time {
	return time.Unix(int64(r.longlong()), 0).UTC()
}

func (r *argReader) shortstr() string {
	r.nbit = 0
	if len(r.b) < 1 || len(r.b) < 1+int(r.b[0]) {
		r.fail("shortstr")
		return ""
	}
	n := int(r.b[0])
	raw := r.b[1 : 1+n]
	r.b = r.b[1+n:]
	if n == 0 {
		return ""
	}
	if r.strs == nil {
		return string(raw)
	}
	if s, ok := (*r.strs)[string(raw)]; ok { // no allocation: the compiler elides the conversion
		return s
	}
	if len(*r.strs) >= maxInterned {
		clear(*r.strs)
	}
	s := string(raw)
	(*r.strs)[s] = s
	return s
}

// shortstrUTF8 is shortstr for the fields RabbitMQ checks: malformed UTF-8 (as validUTF8
// defines it) is 501 FRAME_ERROR "Malformed UTF-8 in shortstr".
func (r *argReader) shortstrUTF8() string {
	if len(r.b) > 0 && len(r.b) >= 1+int(r.b[0]) && !validUTF8(r.b[1:1+int(r.b[0])]) {
		if r.err == nil {
			e := frameErr("Malformed UTF-8 in shortstr").(*Error)
			e.cause = ErrMalformedUTF8
			r.err, r.badUTF8 = e, true
		}
		r.b = nil
		return ""
	}
	return r.shortstr()
}

// validUTF8 reports whether b is well-formed UTF-8 in RabbitMQ 3.10's sense, which checks the
// byte structure and overlong forms only: a lead byte C2–DF takes one continuation byte
// (80–BF), E0–EF two, F0–F7 three, where E0 must be followed by A0–BF and F0 by 90–BF. So,
// unlike Go's utf8.Valid, it accepts surrogates (ED A0 80) and code points up to U+1FFFFF
// (F7 BF BF BF); C0, C1, F8–FF and stray continuation bytes are malformed.
func validUTF8(b []byte) bool {
	i := 0
	for i < len(b) && b[i] < 0x80 { // names are ASCII: the fast path
		i++
	}
	for i < len(b) {
		c := b[i]
		var n int
		lo := byte(0x80) // the second byte's lower bound (overlong forms)
		switch {
		case c < 0x80:
			i++
			continue
		case c >= 0xC2 && c <= 0xDF:
			n = 1
		case c >= 0xE0 && c <= 0xEF:
			n = 2
			if c == 0xE0 {
				lo = 0xA0
			}
		case c >= 0xF0 && c <= 0xF7:
			n = 3
			if c == 0xF0 {
				lo = 0x90
			}
		default:
			return false
		}
		if len(b)-i-1 < n {
			return false
		}
		for k := 1; k <= n; k++ {
			least := byte(0x80)
			if k == 1 {
				least = lo
			}
			if b[i+k] < least || b[i+k] > 0xBF {
				return false
			}
		}
		i += 1 + n
	}
	return true
}

func (r *argReader) longstr() string {
	r.nbit = 0
	if len(r.b) < 4 {
		r.fail("longstr")
		return ""
	}
	n := binary.BigEndian.Uint32(r.b)
	if uint64(len(r.b)-4) < uint64(n) {
		r.fail("longstr")
		return ""
	}
	s := string(r.b[4 : 4+n])
	r.b = r.b[4+n:]
	return s
}

func (r *argReader) table() Table {
	r.nbit = 0
	if r.err != nil {
		return nil
	}
	t, rest, err := ReadTable(r.b)
	if err != nil {
		r.err = err
		r.b = nil
		return nil
	}
	r.b = rest
	return t
}

func packBits(bits ...bool) byte {
	var b byte
	for i, v := range bits {
		if v {
			b |= 1 << i
		}
	}
	return b
}

func appendUint16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendUint32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendUint64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// appendShortstr appends a short string; longer than 255 bytes is cut to 255 (callers validate
// lengths that come from clients; this only keeps the encoding well formed).
func appendShortstr(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendLongstr(b []byte, s string) []byte {
	b = appendUint32(b, uint32(len(s)))
	return append(b, s...)
}
