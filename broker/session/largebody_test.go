package session

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/queue"
)

// handshakeFrameMax is handshake with the client's frame_max.
func (tc *testClient) handshakeFrameMax(frameMax uint32) {
	tc.t.Helper()
	tc.write(amqp.ProtocolHeader)
	tc.expect(&amqp.ConnectionStart{})
	tc.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	tune := tc.expect(&amqp.ConnectionTune{}).(*amqp.ConnectionTune)
	tc.send(0, &amqp.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: frameMax})
	tc.send(0, &amqp.ConnectionOpen{VirtualHost: "/"})
	tc.expect(&amqp.ConnectionOpenOk{})
	tc.send(1, &amqp.ChannelOpen{})
	tc.expect(&amqp.ChannelOpenOk{})
}

// publish sends a message in body frames of at most frameMax bytes.
func (tc *testClient) publish(queueName string, body []byte, frameMax uint32) {
	b := amqp.AppendMethodFrame(nil, 1, &amqp.BasicPublish{RoutingKey: queueName})
	b = amqp.AppendContent(b, 1, []byte{0, 0}, body, frameMax)
	tc.write(b)
}

// getBody sends basic.get and returns the body of the message it answers with.
func (tc *testClient) getBody(queueName string) []byte {
	tc.t.Helper()
	tc.send(1, &amqp.BasicGet{Queue: queueName, NoAck: true})
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var body []byte
	size := -1
	for size < 0 || len(body) < size {
		f, err := tc.fr.ReadFrame()
		if err != nil {
			tc.t.Fatalf("reading basic.get-ok content: %v", err)
		}
		switch f.Type {
		case amqp.FrameMethod:
			if m, _ := amqp.DecodeMethod(f.Payload); m == nil || m.Name() != (&amqp.BasicGetOk{}).Name() {
				tc.t.Fatalf("got %v, want basic.get-ok", m)
			}
		case amqp.FrameHeader:
			size = int(binary.BigEndian.Uint64(f.Payload[4:]))
			body = make([]byte, 0, size)
			if size == 0 {
				return body
			}
		case amqp.FrameBody:
			if int(f.Channel) != 1 || len(f.Payload) == 0 {
				tc.t.Fatalf("body frame on channel %d with %d bytes", f.Channel, len(f.Payload))
			}
			body = append(body, f.Payload...)
		}
	}
	if len(body) != size {
		tc.t.Fatalf("body frames carried %d bytes, header said %d", len(body), size)
	}
	return body
}

// Bodies go out intact whether copied or referenced: small, at the reference threshold, and
// a large one in 4 KiB frames (more pieces than one writev takes), interleaved, over TCP.
func TestConn_LargeBodiesDeliveredByReference(t *testing.T) {
	tc, c, _ := serveTest(t, &Env{})
	const frameMax = 4096
	tc.handshakeFrameMax(frameMax)
	tc.send(1, &amqp.QueueDeclare{Queue: "big"})
	tc.expect(&amqp.QueueDeclareOk{})
	sizes := []int{0, 100, refBodyMin - 1, refBodyMin, 5 << 20, 3}
	var bodies [][]byte
	for i, n := range sizes {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*31 + j*7)
		}
		bodies = append(bodies, b)
		tc.publish("big", b, frameMax)
	}
	for i, want := range bodies {
		if got := tc.getBody("big"); !bytes.Equal(got, want) {
			t.Fatalf("message %d (%d bytes) came back different (%d bytes)", i, len(want), len(got))
		}
	}
	c.outMu.Lock()
	refs, refBytes := len(c.refs), c.refBytes
	c.outMu.Unlock()
	if refs != 0 || refBytes != 0 {
		t.Fatalf("after the writes %d references (%d bytes) are left", refs, refBytes)
	}
}

// Conn.writeOut without raw writes (TLS, pipes) coalesces the pieces through its scratch
// buffer: the bytes arrive in order.
func TestConn_WriteOutCoalesced(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &Conn{nc: a, pacer: newReadPacer(a)}
	buf := []byte("head-1|sep-2|tail")
	big := bytes.Repeat([]byte("x"), 600<<10)
	refs := []outRef{{at: 7, body: []byte("<ref-a>")}, {at: 13, body: big}}
	want := append(append(append(append([]byte("head-1|"), "<ref-a>"...), "sep-2|"...), big...), "tail"...)
	got := make(chan []byte, 1)
	go func() {
		all := make([]byte, 0, len(want))
		p := make([]byte, 64<<10)
		for len(all) < len(want) {
			n, err := b.Read(p)
			all = append(all, p[:n]...)
			if err != nil {
				break
			}
		}
		got <- all
	}()
	n, err := c.writeOut(buf, refs)
	if err != nil || n != len(want) {
		t.Fatalf("writeOut: n=%d err=%v, want %d", n, err, len(want))
	}
	if g := <-got; !bytes.Equal(g, want) {
		t.Fatalf("pipe got %d bytes, not the %d expected", len(g), len(want))
	}
}

// A large body is assembled into one buffer of its announced size and counts in the memory
// budget while it is received: released when it is published, and when its channel goes away
// mid-content.
func TestChannel_LargeBodyAssemblyAndBudget(t *testing.T) {
	budget := &queue.Budget{}
	tc, c, served := serveTest(t, &Env{Budget: budget})
	tc.handshakeFrameMax(131072)
	tc.send(1, &amqp.QueueDeclare{Queue: "q"})
	tc.expect(&amqp.QueueDeclareOk{})
	size := 3 << 20
	b := amqp.AppendMethodFrame(nil, 1, &amqp.BasicPublish{RoutingKey: "q"})
	b = amqp.AppendContent(b, 1, []byte{0, 0}, make([]byte, size), 131072)
	half := len(b) / 2
	tc.write(b[:half])
	waitUntil(t, "the body counted in the budget", func() bool { return budget.Inflight() == int64(size) })
	tc.write(b[half:])
	waitUntil(t, "the body released from the budget", func() bool { return budget.Inflight() == 0 })
	q := c.vh.Queue("q")
	var e queue.Entry
	var ok bool
	// The budget lets go of the body as it is handed to the publish path, a moment before the
	// queue holds it.
	waitUntil(t, "the body queued", func() bool { e, _, ok = q.Get(); return ok })
	if len(e.Msg.Body) != size || cap(e.Msg.Body) != size {
		t.Fatalf("queued body: len %d cap %d, want exactly %d", len(e.Msg.Body), cap(e.Msg.Body), size)
	}
	// Abandoned mid-content: the connection goes, the budget gets its bytes back.
	tc.write(b[:half])
	waitUntil(t, "the second body counted", func() bool { return budget.Inflight() == int64(size) })
	tc.nc.Close()
	<-served
	if got := budget.Inflight(); got != 0 {
		t.Fatalf("budget still counts %d bytes in flight after the connection ended", got)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
