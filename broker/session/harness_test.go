package session

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/vhost"
)

// testConn returns a connection past its handshake, on vhost "/" without storage, that is
// driven frame by frame from the test (no reader or writer goroutine): feed hands it frames as
// its reader would, sent takes what it queued for the client.
func testConn(t testing.TB) *Conn {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	c := NewConn(&Env{Log: zerolog.New(zerolog.NewTestWriter(t))}, a, 1)
	c.vh = vhost.New("/", nil)
	c.user = "guest"
	c.frameMax = 131072
	c.channelMax = 2047
	return c
}

// feed hands the encoded frames in b to the connection as its reader does, then flushes
// confirms as the reader does at the end of a read batch. A connection-level error fails the
// test (feedErr returns it).
func feed(t testing.TB, c *Conn, b []byte) {
	t.Helper()
	if err := feedErr(c, b); err != nil {
		t.Fatalf("feed: %v", err)
	}
}

func feedErr(c *Conn, b []byte) error {
	fr := amqp.NewFrameReader(bytes.NewReader(b), 1<<20)
	fr.SetMaxFrameSize(c.frameMax)
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if _, err := c.handleFrame(f); err != nil {
			return err
		}
	}
	c.flushConfirms()
	return nil
}

// method encodes one method frame.
func method(ch uint16, m amqp.Method) []byte { return amqp.AppendMethodFrame(nil, ch, m) }

// publishFrames encodes basic.publish with its content.
func publishFrames(ch uint16, exchange, key string, props amqp.Properties, body []byte) []byte {
	b := amqp.AppendMethodFrame(nil, ch, &amqp.BasicPublish{Exchange: exchange, RoutingKey: key})
	b = amqp.AppendContentHeader(b, ch, uint64(len(body)), props.AppendTo(nil))
	return amqp.AppendBody(b, ch, body, 131072)
}

var persistent = amqp.Properties{DeliveryMode: 2}

// sentFrame is a frame the connection queued for the client; m is its decoded method.
type sentFrame struct {
	ch uint16
	m  amqp.Method // nil for content frames
}

// sent takes every frame queued for the client so far.
func sent(t testing.TB, c *Conn) []sentFrame {
	t.Helper()
	c.outMu.Lock()
	b := c.out
	c.out = nil
	c.outMu.Unlock()
	fr := amqp.NewFrameReader(bytes.NewReader(b), 1<<20)
	fr.SetMaxFrameSize(0)
	var out []sentFrame
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decoding what the connection sent: %v", err)
		}
		sf := sentFrame{ch: f.Channel}
		if f.Type == amqp.FrameMethod {
			if sf.m, err = amqp.DecodeMethod(f.Payload); err != nil {
				t.Fatalf("decoding what the connection sent: %v", err)
			}
		}
		out = append(out, sf)
	}
}

// confirmsSent returns the basic.ack and basic.nack frames among fs, in order, as strings
// ("ack 2 multiple", "nack 3").
func confirmsSent(fs []sentFrame) []string {
	var out []string
	for _, f := range fs {
		switch m := f.m.(type) {
		case *amqp.BasicAck:
			s := "ack " + itoa(int(m.DeliveryTag))
			if m.Multiple {
				s += " multiple"
			}
			out = append(out, s)
		case *amqp.BasicNack:
			s := "nack " + itoa(int(m.DeliveryTag))
			if m.Multiple {
				s += " multiple"
			}
			out = append(out, s)
		}
	}
	return out
}

// fakeLog is an in-memory queue.Log whose appends become durable only when the test says so
// (complete), on another goroutine as the WAL's commit goroutine does.
type fakeLog struct {
	mu    sync.Mutex
	next  uint64
	dones []func(uint64, error)
	offs  []uint64
}

func (l *fakeLog) Append(payload []byte, done func(uint64, error)) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	l.dones = append(l.dones, done)
	l.offs = append(l.offs, l.next)
	return l.next
}

func (l *fakeLog) Retire(...uint64)        {}
func (l *fakeLog) MarkDelivered(...uint64) {}

// pending returns how many appends have not been completed.
func (l *fakeLog) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, d := range l.dones {
		if d != nil {
			n++
		}
	}
	return n
}

// complete makes the i-th append (from 0) durable: its callback runs on another goroutine and
// complete returns when it has run.
func (l *fakeLog) complete(i int, err error) {
	l.mu.Lock()
	done, off := l.dones[i], l.offs[i]
	l.dones[i] = nil
	l.mu.Unlock()
	if done == nil {
		return
	}
	finished := make(chan struct{})
	go func() {
		done(off, err)
		close(finished)
	}()
	<-finished
}
