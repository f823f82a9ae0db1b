package conformance

// Raw-socket tests: a tiny AMQP 0-9-1 frame encoder/decoder (AMQP 0-9-1 §4.2.3 general frame
// format, §4.2.5 method payloads) and the hostile-input tests built on it. Nothing here imports
// Warren's own packages: the point is to speak the wire format independently of them.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	rawFrameMethod    = 1
	rawFrameHeader    = 2
	rawFrameBody      = 3
	rawFrameHeartbeat = 8
	rawFrameEnd       = 0xCE

	rawReadTimeout = 5 * time.Second
)

// rawProtocolHeader is the AMQP 0-9-1 protocol header (§4.2.2).
var rawProtocolHeader = []byte("AMQP\x00\x00\x09\x01")

// rawFrame is one decoded frame.
type rawFrame struct {
	typ     byte
	channel uint16
	payload []byte
}

// classMethod returns the class and method id of a method frame (0, 0 for other frames).
func (f rawFrame) classMethod() (uint16, uint16) {
	if f.typ != rawFrameMethod || len(f.payload) < 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(f.payload), binary.BigEndian.Uint16(f.payload[2:])
}

func (f rawFrame) String() string {
	if f.typ == rawFrameMethod {
		c, m := f.classMethod()
		return fmt.Sprintf("method %d.%d on channel %d (%d bytes)", c, m, f.channel, len(f.payload))
	}
	return fmt.Sprintf("frame type %d on channel %d (%d bytes)", f.typ, f.channel, len(f.payload))
}

// rawArgs encodes method arguments (§4.2.5.x field types). Bits must be packed by the caller
// into octets, as the spec requires for consecutive bit fields.
type rawArgs []byte

func (a rawArgs) octet(v byte) rawArgs { return append(a, v) }
func (a rawArgs) short(v uint16) rawArgs {
	return binary.BigEndian.AppendUint16(a, v)
}
func (a rawArgs) long(v uint32) rawArgs {
	return binary.BigEndian.AppendUint32(a, v)
}
func (a rawArgs) longlong(v uint64) rawArgs {
	return binary.BigEndian.AppendUint64(a, v)
}
func (a rawArgs) shortstr(s string) rawArgs {
	return append(append(a, byte(len(s))), s...)
}
func (a rawArgs) longstr(s string) rawArgs {
	return append(a.long(uint32(len(s))), s...)
}

// table appends a field table (§4.2.5.5). kv alternates keys and values; values may be string
// ('S'), bool ('t') or rawTableValue (a nested, already encoded table 'F').
func (a rawArgs) table(kv ...any) rawArgs {
	return append(a, rawEncodeTable(kv...)...)
}

// rawTableValue is an encoded field table used as a nested value.
type rawTableValue []byte

func rawEncodeTable(kv ...any) rawTableValue {
	var body []byte
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		body = append(append(body, byte(len(k))), k...)
		switch v := kv[i+1].(type) {
		case string:
			body = append(body, 'S')
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case bool:
			b := byte(0)
			if v {
				b = 1
			}
			body = append(body, 't', b)
		case rawTableValue:
			body = append(body, 'F')
			body = append(body, v...)
		default:
			panic(fmt.Sprintf("rawEncodeTable: unsupported %T", v))
		}
	}
	return rawTableValue(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
}

// rawMethod builds a method frame payload: class id, method id, arguments.
func rawMethod(class, method uint16, args rawArgs) []byte {
	p := binary.BigEndian.AppendUint16(nil, class)
	p = binary.BigEndian.AppendUint16(p, method)
	return append(p, args...)
}

// rawEncodeFrame encodes one frame with the given end octet.
func rawEncodeFrame(typ byte, channel uint16, payload []byte, end byte) []byte {
	b := make([]byte, 0, 8+len(payload))
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, channel)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return append(b, end)
}

// rawContentHeader builds a basic content header payload (§4.2.6.1) with no properties.
func rawContentHeader(bodySize uint64) []byte {
	return rawArgs(nil).short(60).short(0).longlong(bodySize).short(0)
}

// rawConn is a raw AMQP client socket.
type rawConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// rawConnect dials the broker without any handshake.
func rawConnect(t testing.TB) *rawConn {
	t.Helper()
	c := rawDial(t)
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// write sends bytes; write errors are ignored because a broker may legitimately close the
// socket while we are still writing hostile input, and the test then asserts what it read.
func (rc *rawConn) write(b []byte) {
	rc.c.SetWriteDeadline(time.Now().Add(rawReadTimeout))
	rc.c.Write(b)
}

// send writes one well-formed frame.
func (rc *rawConn) send(typ byte, channel uint16, payload []byte) {
	rc.write(rawEncodeFrame(typ, channel, payload, rawFrameEnd))
}

// sendMethod writes one method frame.
func (rc *rawConn) sendMethod(channel, class, method uint16, args rawArgs) {
	rc.send(rawFrameMethod, channel, rawMethod(class, method, args))
}

// readFrame reads one frame within rawReadTimeout.
func (rc *rawConn) readFrame() (rawFrame, error) {
	rc.c.SetReadDeadline(time.Now().Add(rawReadTimeout))
	var h [7]byte
	if _, err := io.ReadFull(rc.r, h[:]); err != nil {
		return rawFrame{}, err
	}
	f := rawFrame{typ: h[0], channel: binary.BigEndian.Uint16(h[1:])}
	size := binary.BigEndian.Uint32(h[3:])
	if size > 16<<20 {
		return rawFrame{}, fmt.Errorf("frame size %d too large", size)
	}
	f.payload = make([]byte, size+1)
	if _, err := io.ReadFull(rc.r, f.payload); err != nil {
		return rawFrame{}, err
	}
	if end := f.payload[size]; end != rawFrameEnd {
		return rawFrame{}, fmt.Errorf("bad frame end 0x%02x", end)
	}
	f.payload = f.payload[:size]
	return f, nil
}

// nextFrame reads the next frame that is not a heartbeat, failing the test on error.
func (rc *rawConn) nextFrame() rawFrame {
	rc.t.Helper()
	for {
		f, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("read frame: %v", err)
		}
		if f.typ != rawFrameHeartbeat {
			return f
		}
	}
}

// expectMethod reads the next non-heartbeat frame and asserts it is the given method on channel.
// It returns the method arguments.
func (rc *rawConn) expectMethod(channel, class, method uint16) []byte {
	rc.t.Helper()
	f := rc.nextFrame()
	c, m := f.classMethod()
	if f.typ != rawFrameMethod || f.channel != channel || c != class || m != method {
		if f.typ == rawFrameMethod && c == 10 && m == 50 {
			cl := rawDecodeClose(rc.t, f.payload[4:])
			rc.t.Fatalf("expected method %d.%d on channel %d, got connection.close %d %q (%d.%d)",
				class, method, channel, cl.code, cl.text, cl.classID, cl.methodID)
		}
		rc.t.Fatalf("expected method %d.%d on channel %d, got %v", class, method, channel, f)
	}
	return f.payload[4:]
}

// rawClose is a decoded connection.close or channel.close (§1.4.2.9 / §1.5.2.5): reply-code,
// reply-text, class-id, method-id.
type rawClose struct {
	code              uint16
	text              string
	classID, methodID uint16
}

func rawDecodeClose(t testing.TB, args []byte) rawClose {
	t.Helper()
	if len(args) < 3 || len(args) < 3+int(args[2])+4 {
		t.Fatalf("truncated close method: % x", args)
	}
	n := int(args[2])
	return rawClose{
		code:     binary.BigEndian.Uint16(args),
		text:     string(args[3 : 3+n]),
		classID:  binary.BigEndian.Uint16(args[3+n:]),
		methodID: binary.BigEndian.Uint16(args[5+n:]),
	}
}

// expectConnectionClose reads frames until connection.close arrives on channel 0 (any other
// method fails the test), answers close-ok and asserts the broker then closes the socket
// (AMQP 0-9-1 §1.4.2.10: after close-ok the sender of close "can safely close the socket").
// After a 501 FRAME_ERROR the broker cannot parse our stream any more, so it may not see the
// close-ok: RabbitMQ then closes on a timer (about 3 s), which this helper does not wait for.
func (rc *rawConn) expectConnectionClose() rawClose {
	rc.t.Helper()
	for {
		f, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("expected connection.close, got read error: %v", err)
		}
		if f.typ == rawFrameHeartbeat {
			continue
		}
		c, m := f.classMethod()
		if f.typ != rawFrameMethod || f.channel != 0 || c != 10 || m != 50 {
			rc.t.Fatalf("expected connection.close, got %v", f)
		}
		cl := rawDecodeClose(rc.t, f.payload[4:])
		rc.sendMethod(0, 10, 51, nil) // connection.close-ok
		if cl.code != 501 {
			rc.expectEOF(rawReadTimeout)
		}
		return cl
	}
}

// expectConnectionCloseCode is expectConnectionClose plus a reply-code check.
func (rc *rawConn) expectConnectionCloseCode(code uint16) rawClose {
	rc.t.Helper()
	cl := rc.expectConnectionClose()
	if cl.code != code {
		rc.t.Fatalf("connection.close reply-code %d (%q), want %d", cl.code, cl.text, code)
	}
	return cl
}

// expectEOF asserts the broker closes the socket within d, discarding anything it still sends.
func (rc *rawConn) expectEOF(d time.Duration) {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, rc.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		rc.t.Fatalf("socket still open after %v", d)
	}
}

// rawTune holds connection.tune / tune-ok values (§1.4.2.5).
type rawTune struct {
	channelMax uint16
	frameMax   uint32
	heartbeat  uint16
}

// rawStart is a decoded connection.start (§1.4.2.1); the server-properties table is kept raw.
type rawStart struct {
	major, minor byte
	properties   []byte
	mechanisms   string
	locales      string
}

func rawDecodeStart(t testing.TB, args []byte) rawStart {
	t.Helper()
	var s rawStart
	if len(args) < 6 {
		t.Fatalf("truncated connection.start: % x", args)
	}
	s.major, s.minor = args[0], args[1]
	n := int(binary.BigEndian.Uint32(args[2:]))
	if len(args) < 6+n+4 {
		t.Fatalf("truncated connection.start: % x", args)
	}
	s.properties = args[6 : 6+n]
	rest := args[6+n:]
	m := int(binary.BigEndian.Uint32(rest))
	if len(rest) < 4+m+4 {
		t.Fatalf("truncated connection.start: % x", args)
	}
	s.mechanisms = string(rest[4 : 4+m])
	rest = rest[4+m:]
	l := int(binary.BigEndian.Uint32(rest))
	if len(rest) < 4+l {
		t.Fatalf("truncated connection.start: % x", args)
	}
	s.locales = string(rest[4 : 4+l])
	return s
}

// startHandshake sends the protocol header and reads connection.start.
func (rc *rawConn) startHandshake() rawStart {
	rc.t.Helper()
	rc.write(rawProtocolHeader)
	return rawDecodeStart(rc.t, rc.expectMethod(0, 10, 10))
}

// sendStartOk sends connection.start-ok with the given client properties, mechanism and response.
func (rc *rawConn) sendStartOk(props rawTableValue, mechanism, response string) {
	if props == nil {
		props = rawEncodeTable("product", "warren-conformance")
	}
	rc.sendMethod(0, 10, 11, rawArgs(props).shortstr(mechanism).longstr(response).shortstr("en_US"))
}

// rawPlainGuest is the SASL PLAIN response for guest/guest (RFC 4616).
const rawPlainGuest = "\x00guest\x00guest"

// readTune reads connection.tune.
func (rc *rawConn) readTune() rawTune {
	rc.t.Helper()
	a := rc.expectMethod(0, 10, 30)
	if len(a) < 8 {
		rc.t.Fatalf("truncated connection.tune: % x", a)
	}
	return rawTune{
		channelMax: binary.BigEndian.Uint16(a),
		frameMax:   binary.BigEndian.Uint32(a[2:]),
		heartbeat:  binary.BigEndian.Uint16(a[6:]),
	}
}

// sendTuneOk sends connection.tune-ok.
func (rc *rawConn) sendTuneOk(tn rawTune) {
	rc.sendMethod(0, 10, 31, rawArgs(nil).short(tn.channelMax).long(tn.frameMax).short(tn.heartbeat))
}

// sendOpen sends connection.open for vhost (reserved-1 "", reserved-2 false).
func (rc *rawConn) sendOpen(vhost string) {
	rc.sendMethod(0, 10, 40, rawArgs(nil).shortstr(vhost).shortstr("").octet(0))
}

// rawHandshake dials and completes the handshake as guest on vhost "/". tune, when not nil,
// chooses the tune-ok values from the server's connection.tune; by default the client accepts
// the server's channel-max and frame-max and disables heartbeats.
func rawHandshake(t testing.TB, tune func(server rawTune) rawTune) (*rawConn, rawTune) {
	t.Helper()
	rc := rawConnect(t)
	rc.startHandshake()
	rc.sendStartOk(nil, "PLAIN", rawPlainGuest)
	server := rc.readTune()
	ok := server
	ok.heartbeat = 0
	if tune != nil {
		ok = tune(server)
	}
	rc.sendTuneOk(ok)
	rc.sendOpen("/")
	rc.expectMethod(0, 10, 41)
	return rc, ok
}

// openChannel sends channel.open on id and waits for channel.open-ok.
func (rc *rawConn) openChannel(id uint16) {
	rc.t.Helper()
	rc.sendMethod(id, 20, 10, rawArgs(nil).shortstr(""))
	rc.expectMethod(id, 20, 11)
}

// declareTempQueue declares a server-named exclusive auto-delete queue on channel (queue.declare
// §1.7.2.1) and returns its name.
func (rc *rawConn) declareTempQueue(channel uint16) string {
	rc.t.Helper()
	rc.sendMethod(channel, 50, 10, rawArgs(nil).short(0).shortstr("").octet(4|8).table())
	ok := rc.expectMethod(channel, 50, 11)
	if len(ok) < 1 || len(ok) < 1+int(ok[0]) {
		rc.t.Fatalf("truncated queue.declare-ok: % x", ok)
	}
	return string(ok[1 : 1+int(ok[0])])
}

// rawPublishArgs encodes basic.publish (§1.8.3.7) to exchange "" with routing key rk.
func rawPublishArgs(rk string) rawArgs {
	return rawArgs(nil).short(0).shortstr("").shortstr(rk).octet(0)
}

// expectConnectionCloseNaming asserts the connection.close reply code and the class/method it names.
func (rc *rawConn) expectConnectionCloseNaming(code, class, method uint16) {
	rc.t.Helper()
	cl := rc.expectConnectionCloseCode(code)
	if cl.classID != class || cl.methodID != method {
		rc.t.Errorf("connection.close %d names method %d.%d, want %d.%d", code, cl.classID, cl.methodID, class, method)
	}
}

// AMQP 0-9-1 §4.2.3: every frame ends with frame-end 0xCE; "If a peer receives a frame with an
// invalid frame-end octet, it MUST signal a connection exception with reply code 501
// (frame error)".
func TestFrame_BadFrameEndIsFrameError(t *testing.T) {
	t.Parallel()
	for _, ch := range []uint16{0, 1} {
		t.Run(fmt.Sprintf("channel=%d", ch), func(t *testing.T) {
			t.Parallel()
			rc, _ := rawHandshake(t, nil)
			rc.openChannel(1)
			rc.write(rawEncodeFrame(rawFrameMethod, ch,
				rawMethod(60, 10, rawArgs(nil).long(0).short(1).octet(0)), 0xAB))
			rc.expectConnectionCloseNaming(501, 0, 0)
		})
	}
}

// AMQP 0-9-1 §4.2.3 / §1.4.2.6: a frame larger than the negotiated frame-max is a 501 FRAME_ERROR.
// The broker decides from the 7-byte header, before the payload arrives. (RabbitMQ tolerates a
// payload up to frame-max itself, 8 octets more than the spec allows; a payload of frame-max+1
// is refused everywhere, which is what this test sends.)
func TestFrame_OversizedFrameIsFrameError(t *testing.T) {
	t.Parallel()
	for name, frameMax := range map[string]uint32{"server-frame-max": 0, "client-frame-max-4096": 4096} {
		for _, typ := range []byte{rawFrameMethod, rawFrameBody} {
			t.Run(fmt.Sprintf("%s/type=%d", name, typ), func(t *testing.T) {
				t.Parallel()
				rc, tn := rawHandshake(t, func(s rawTune) rawTune {
					if frameMax != 0 {
						s.frameMax = frameMax
					}
					s.heartbeat = 0
					return s
				})
				rc.openChannel(1)
				var h [7]byte
				h[0] = typ
				binary.BigEndian.PutUint16(h[1:], 1)
				binary.BigEndian.PutUint32(h[3:], tn.frameMax+1)
				rc.write(h[:])
				rc.expectConnectionCloseNaming(501, 0, 0)
			})
		}
	}
}

// AMQP 0-9-1 §4.2.3: a frame of exactly frame-max octets (payload frame-max - 8) is legal; the
// broker accepts a body frame of that size and the message arrives intact.
func TestFrame_FrameOfExactlyFrameMaxAccepted(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	rc, tn := rawHandshake(t, func(s rawTune) rawTune { s.frameMax = 4096; s.heartbeat = 0; return s })
	rc.openChannel(1)
	body := bytes.Repeat([]byte{'x'}, int(tn.frameMax)-8)
	body[0], body[len(body)-1] = 'a', 'z'
	rc.sendMethod(1, 60, 40, rawPublishArgs(q.Name))
	rc.send(rawFrameHeader, 1, rawContentHeader(uint64(len(body))))
	rc.send(rawFrameBody, 1, body)
	m := publishGetOne(t, ch, q.Name)
	if !bytes.Equal(m.Body, body) {
		t.Fatalf("body of %d bytes came back as %d bytes", len(body), len(m.Body))
	}
}

// AMQP 0-9-1 §4.2.3 defines frame types 1 (method), 2 (header), 3 (body) and 8 (heartbeat);
// RabbitMQ answers any other type with 501 FRAME_ERROR, on any channel.
func TestFrame_UnknownFrameTypeIsFrameError(t *testing.T) {
	t.Parallel()
	for _, typ := range []byte{0, 4, 9, 255} {
		for _, ch := range []uint16{0, 1} {
			t.Run(fmt.Sprintf("type=%d/channel=%d", typ, ch), func(t *testing.T) {
				t.Parallel()
				rc, _ := rawHandshake(t, nil)
				rc.openChannel(1)
				rc.send(typ, ch, []byte{1, 2, 3})
				rc.expectConnectionCloseNaming(501, 0, 0)
			})
		}
	}
}

// AMQP 0-9-1 §4.2.7: heartbeat frames belong on channel 0 and have an empty payload. RabbitMQ
// answers a heartbeat on another channel with 505 UNEXPECTED_FRAME and one with a payload with
// 501 FRAME_ERROR.
func TestFrame_MalformedHeartbeatIsConnectionError(t *testing.T) {
	t.Parallel()
	t.Run("on-channel-1", func(t *testing.T) {
		t.Parallel()
		rc, _ := rawHandshake(t, nil)
		rc.openChannel(1)
		rc.send(rawFrameHeartbeat, 1, nil)
		rc.expectConnectionCloseNaming(505, 0, 0)
	})
	t.Run("with-payload", func(t *testing.T) {
		t.Parallel()
		rc, _ := rawHandshake(t, nil)
		rc.send(rawFrameHeartbeat, 0, []byte{1})
		rc.expectConnectionCloseNaming(501, 0, 0)
	})
}

// AMQP 0-9-1 §1.5.2.1 / §4.2.3: a channel must be opened with channel.open before other methods
// use it; anything else on an unopened channel is a 504 CHANNEL_ERROR connection exception
// naming the offending method.
func TestFrame_MethodOnUnopenedChannelIsChannelError(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, nil)
	rc.sendMethod(3, 60, 10, rawArgs(nil).long(0).short(1).octet(0)) // basic.qos
	rc.expectConnectionCloseNaming(504, 60, 10)
}

// AMQP 0-9-1 §4.2.6: content is a content-bearing method, then one content header, then body
// frames. Frames out of that order are 505 UNEXPECTED_FRAME connection exceptions; RabbitMQ
// names basic.publish when the broken content belongs to one.
func TestFrame_ContentOutOfOrderIsUnexpectedFrame(t *testing.T) {
	t.Parallel()
	qos := rawMethod(60, 10, rawArgs(nil).long(0).short(1).octet(0))
	cases := []struct {
		name          string
		frames        []rawFrame
		class, method uint16
	}{
		{"header-without-publish", []rawFrame{{rawFrameHeader, 1, rawContentHeader(3)}}, 0, 0},
		{"body-without-header", []rawFrame{{rawFrameBody, 1, []byte("abc")}}, 0, 0},
		{"header-on-channel-0", []rawFrame{{rawFrameHeader, 0, rawContentHeader(3)}}, 0, 0},
		{"body-instead-of-header", []rawFrame{
			{rawFrameMethod, 1, rawMethod(60, 40, rawPublishArgs("x"))},
			{rawFrameBody, 1, []byte("abc")},
		}, 60, 40},
		{"method-instead-of-header", []rawFrame{
			{rawFrameMethod, 1, rawMethod(60, 40, rawPublishArgs("x"))},
			{rawFrameMethod, 1, qos},
		}, 60, 40},
		{"method-instead-of-body", []rawFrame{
			{rawFrameMethod, 1, rawMethod(60, 40, rawPublishArgs("x"))},
			{rawFrameHeader, 1, rawContentHeader(3)},
			{rawFrameMethod, 1, qos},
		}, 60, 40},
		{"header-of-wrong-class", []rawFrame{
			{rawFrameMethod, 1, rawMethod(60, 40, rawPublishArgs("x"))},
			{rawFrameHeader, 1, rawArgs(nil).short(50).short(0).longlong(3).short(0)},
		}, 60, 40},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc, _ := rawHandshake(t, nil)
			rc.openChannel(1)
			for _, f := range tc.frames {
				rc.send(f.typ, f.channel, f.payload)
			}
			rc.expectConnectionCloseNaming(505, tc.class, tc.method)
		})
	}
}

// AMQP 0-9-1 §4.2.6: a content header with body-size 0 completes the content without body
// frames; the next method on the channel is processed normally.
func TestFrame_EmptyContentNeedsNoBodyFrame(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, nil)
	rc.openChannel(1)
	rc.sendMethod(1, 60, 40, rawPublishArgs(uniqueName(t)))
	rc.send(rawFrameHeader, 1, rawContentHeader(0))
	rc.sendMethod(1, 85, 10, rawArgs(nil).octet(0)) // confirm.select
	rc.expectMethod(1, 85, 11)
}

// AMQP 0-9-1 §1.4.2.9 / reply code 540 NOT_IMPLEMENTED: a method id the server does not know
// ends the connection. RabbitMQ 3.10 drops the socket without connection.close (its frame
// decoder fails on the unknown id); a broker that does send connection.close must use 540.
func TestFrame_UnknownMethodEndsConnection(t *testing.T) {
	t.Parallel()
	for _, cm := range [][2]uint16{{60, 999}, {999, 10}, {10, 999}, {20, 99}} {
		for _, ch := range []uint16{0, 1} {
			t.Run(fmt.Sprintf("method=%d.%d/channel=%d", cm[0], cm[1], ch), func(t *testing.T) {
				t.Parallel()
				rc, _ := rawHandshake(t, nil)
				rc.openChannel(1)
				rc.sendMethod(ch, cm[0], cm[1], nil)
				f, err := rc.readFrame()
				for err == nil && f.typ == rawFrameHeartbeat {
					f, err = rc.readFrame()
				}
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("connection still open %v after an unknown method", rawReadTimeout)
					}
					return // closed without connection.close, as RabbitMQ does
				}
				if c, m := f.classMethod(); c != 10 || m != 50 {
					t.Fatalf("got %v after an unknown method, want the connection ended", f)
				}
				if cl := rawDecodeClose(t, f.payload[4:]); cl.code != 540 {
					t.Fatalf("connection.close %d %q, want 540 NOT_IMPLEMENTED or a dropped socket", cl.code, cl.text)
				}
			})
		}
	}
}

// AMQP 0-9-1 §4.2.5: method arguments must decode exactly. RabbitMQ answers truncated arguments
// and trailing garbage after the last argument with 501 FRAME_ERROR naming the method, and a
// method frame too short to hold class and method ids with 501 naming none.
func TestFrame_MalformedMethodArgumentsIsFrameError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		payload       []byte
		class, method uint16
	}{
		{"queue.declare-truncated-shortstr", rawMethod(50, 10, rawArgs(nil).short(0).octet(20).octet('a')), 50, 10},
		{"basic.qos-truncated", rawMethod(60, 10, rawArgs(nil).long(0)), 60, 10},
		{"basic.qos-trailing-bytes", rawMethod(60, 10, rawArgs(nil).long(0).short(1).octet(0).long(77)), 60, 10},
		{"payload-shorter-than-ids", []byte{0, 60}, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc, _ := rawHandshake(t, nil)
			rc.openChannel(1)
			rc.send(rawFrameMethod, 1, tc.payload)
			rc.expectConnectionCloseNaming(501, tc.class, tc.method)
		})
	}
}

// A client that vanishes in the middle of a frame (or of a message's content) affects only its
// own connection: another client, connected throughout, still publishes and gets messages.
func TestFrame_DisconnectMidFrameLeavesOtherConnectionsAlone(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	publish := rawMethod(60, 40, rawPublishArgs(q.Name))
	header := rawContentHeader(10)
	cases := map[string][]byte{
		"mid-protocol-header": []byte("AMQP\x00"),
		"mid-frame-header":    rawEncodeFrame(rawFrameMethod, 1, publish, rawFrameEnd)[:4],
		"mid-method-payload":  rawEncodeFrame(rawFrameMethod, 1, publish, rawFrameEnd)[:12],
		"before-frame-end":    rawEncodeFrame(rawFrameMethod, 1, publish, rawFrameEnd)[:7+len(publish)],
		"mid-content": append(append(rawEncodeFrame(rawFrameMethod, 1, publish, rawFrameEnd),
			rawEncodeFrame(rawFrameHeader, 1, header, rawFrameEnd)...),
			rawEncodeFrame(rawFrameBody, 1, []byte("01234"), rawFrameEnd)...),
	}
	for name, partial := range cases {
		if name == "mid-protocol-header" {
			rc := rawConnect(t)
			rc.write(partial)
			rc.c.Close()
			continue
		}
		rc, _ := rawHandshake(t, nil)
		rc.openChannel(1)
		rc.write(partial)
		rc.c.Close()
	}
	for i := range 3 {
		body := fmt.Appendf(nil, "after abuse %d", i)
		if err := ch.PublishWithContext(ctx(t), "", q.Name, false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		if m := publishGetOne(t, ch, q.Name); !bytes.Equal(m.Body, body) {
			t.Fatalf("got %q, want %q (a half-published message leaked into the queue?)", m.Body, body)
		}
	}
}
