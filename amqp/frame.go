package amqp

import (
	"encoding/binary"
	"errors"
	"io"
)

// ProtocolHeader is the 8-byte header a 0-9-1 client sends first (spec 4.2.2).
var ProtocolHeader = []byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// SpeaksProtocol reports whether a server answers protocol header h with 0-9-1: the 0-9-1
// header, or the 0-9 one (AMQP, class 1, instance 1, version 0-9), which RabbitMQ also takes
// as 0-9-1 (the two are close enough; connection.start says 0-9 either way). Any other header
// gets ProtocolHeader back and the socket closed. RabbitMQ's 0-8 headers (1 1 8 0, 1 1 9 1)
// are refused: its 0-8 framing differs.
func SpeaksProtocol(h []byte) bool {
	return len(h) == 8 && string(h[:4]) == "AMQP" &&
		(string(h[4:]) == "\x00\x00\x09\x01" || string(h[4:]) == "\x01\x01\x00\x09")
}

// Frame is one frame read from the wire. Payload aliases the reader's buffer and is valid only
// until the next ReadFrame.
type Frame struct {
	Type    uint8
	Channel uint16
	Payload []byte
}

// frameOverhead is the header (type, channel, size) plus the frame-end octet.
const frameOverhead = 8

// FrameReader reads frames from a stream through one buffer, without allocating per frame.
// It is not safe for concurrent use.
type FrameReader struct {
	r        io.Reader
	buf      []byte
	start    int // first unread byte in buf
	end      int // end of buffered data
	maxFrame uint32
}

// NewFrameReader returns a reader with a buffer of at least bufSize bytes. The maximum frame size
// starts at FrameMinSize (the limit before connection.tune-ok, spec 4.2.3).
func NewFrameReader(r io.Reader, bufSize int) *FrameReader {
	if bufSize < FrameMinSize+frameOverhead {
		bufSize = FrameMinSize + frameOverhead
	}
	return &FrameReader{r: r, buf: make([]byte, bufSize), maxFrame: FrameMinSize}
}

// SetMaxFrameSize sets frame_max (total frame size including header and end octet; 0 means
// no limit other than the 32-bit size field, as the spec allows for tune frame-max 0).
func (fr *FrameReader) SetMaxFrameSize(n uint32) { fr.maxFrame = n }

// MaxFrameSize returns the current frame_max.
func (fr *FrameReader) MaxFrameSize() uint32 { return fr.maxFrame }

// Buffered returns the number of bytes read from the stream but not yet returned as frames.
func (fr *FrameReader) Buffered() int { return fr.end - fr.start }

// ReadProtocolHeader reads the 8-byte protocol header (spec 4.2.2) into h.
func (fr *FrameReader) ReadProtocolHeader(h *[8]byte) error {
	if err := fr.fill(8); err != nil {
		return err
	}
	copy(h[:], fr.buf[fr.start:fr.start+8])
	fr.start += 8
	return nil
}

// fill makes sure at least n bytes are buffered, compacting or growing the buffer.
func (fr *FrameReader) fill(n int) error {
	if fr.end-fr.start >= n {
		return nil
	}
	if fr.start+n > len(fr.buf) {
		if n > len(fr.buf) {
			nb := make([]byte, n)
			copy(nb, fr.buf[fr.start:fr.end])
			fr.buf = nb
		} else {
			copy(fr.buf, fr.buf[fr.start:fr.end])
		}
		fr.end -= fr.start
		fr.start = 0
	}
	for fr.end-fr.start < n {
		m, err := fr.r.Read(fr.buf[fr.end:])
		fr.end += m
		if err != nil {
			if fr.end-fr.start >= n {
				return nil
			}
			if errors.Is(err, io.EOF) && fr.end-fr.start > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// ReadFrame reads the next frame. It checks the size against frame_max before allocating or
// buffering the payload, and checks the frame-end octet. Errors from the stream are returned as
// they are (io.EOF at a frame boundary); bad frames give an *Error with FRAME_ERROR.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	if err := fr.fill(7); err != nil {
		return Frame{}, err
	}
	h := fr.buf[fr.start : fr.start+7]
	typ := h[0]
	ch := binary.BigEndian.Uint16(h[1:])
	size := binary.BigEndian.Uint32(h[3:])
	switch typ {
	case FrameMethod, FrameHeader, FrameBody, FrameHeartbeat:
	default:
		return Frame{}, frameErr("unknown frame type %d", typ)
	}
	if fr.maxFrame != 0 && uint64(size)+frameOverhead > uint64(fr.maxFrame) {
		return Frame{}, frameErr("frame size %d exceeds frame_max %d", uint64(size)+frameOverhead, fr.maxFrame)
	}
	if uint64(size) > 1<<31 {
		return Frame{}, frameErr("frame size %d too large", size)
	}
	total := 7 + int(size) + 1
	if err := fr.fill(total); err != nil {
		return Frame{}, err
	}
	f := fr.buf[fr.start : fr.start+total]
	if f[total-1] != FrameEnd {
		return Frame{}, frameErr("frame end octet 0x%02x, expected 0xce", f[total-1])
	}
	fr.start += total
	if fr.start == fr.end {
		fr.start, fr.end = 0, 0
	}
	return Frame{Type: typ, Channel: ch, Payload: f[7 : total-1]}, nil
}

// AppendFrame appends a whole frame with the given payload.
func AppendFrame(b []byte, typ uint8, channel uint16, payload []byte) []byte {
	b = append(b, typ, byte(channel>>8), byte(channel))
	b = appendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return append(b, FrameEnd)
}

// AppendMethodFrame appends a method frame for m on channel.
func AppendMethodFrame(b []byte, channel uint16, m Method) []byte {
	start := len(b)
	b = append(b, FrameMethod, byte(channel>>8), byte(channel), 0, 0, 0, 0)
	b = m.AppendTo(b)
	binary.BigEndian.PutUint32(b[start+3:], uint32(len(b)-start-7))
	return append(b, FrameEnd)
}

// AppendHeartbeat appends a heartbeat frame (channel 0, empty payload).
func AppendHeartbeat(b []byte) []byte {
	return append(b, FrameHeartbeat, 0, 0, 0, 0, 0, 0, FrameEnd)
}

// AppendContent appends a content header frame for the basic class (with the raw properties,
// as ScanProperties accepts them) and the body split into body frames of at most frameMax bytes
// in total (0 = unlimited).
func AppendContent(b []byte, channel uint16, rawProps []byte, body []byte, frameMax uint32) []byte {
	b = AppendContentHeader(b, channel, uint64(len(body)), rawProps)
	return AppendBody(b, channel, body, frameMax)
}

// AppendContentHeader appends a content header frame for the basic class.
func AppendContentHeader(b []byte, channel uint16, bodySize uint64, rawProps []byte) []byte {
	b = append(b, FrameHeader, byte(channel>>8), byte(channel))
	b = appendUint32(b, uint32(12+len(rawProps)))
	b = append(b, byte(ClassBasic>>8), byte(ClassBasic), 0, 0)
	b = appendUint64(b, bodySize)
	b = append(b, rawProps...)
	return append(b, FrameEnd)
}

// AppendBody appends body frames carrying body, each at most frameMax bytes in total.
func AppendBody(b []byte, channel uint16, body []byte, frameMax uint32) []byte {
	chunk := len(body)
	if frameMax > frameOverhead && int(frameMax-frameOverhead) < chunk {
		chunk = int(frameMax - frameOverhead)
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		b = AppendFrame(b, FrameBody, channel, body[:n])
		body = body[n:]
	}
	return b
}
