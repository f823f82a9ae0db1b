package session

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/vhost"
)

// testClient is the client end of a connection served by Serve, driven frame by frame.
type testClient struct {
	t  testing.TB
	nc net.Conn
	fr *amqp.FrameReader
}

// serveTest serves one connection over loopback TCP with env (VHost and Authenticate filled
// in when nil) and returns its client end and a channel closed when Serve returns.
func serveTest(t testing.TB, env *Env) (*testClient, *Conn, <-chan struct{}) {
	t.Helper()
	client, server := tcpPair(t)
	if env.VHost == nil {
		vh := vhost.New("/", nil)
		env.VHost = func(name string) *vhost.VHost {
			if name == "/" {
				return vh
			}
			return nil
		}
	}
	if env.Authenticate == nil {
		env.Authenticate = func(user, pass string, remote net.Addr) (bool, string) { return true, "" }
	}
	env.Log = zerolog.New(zerolog.NewTestWriter(t))
	c := NewConn(env, server, 1)
	served := make(chan struct{})
	go func() { c.Serve(); close(served) }()
	t.Cleanup(func() {
		client.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after the client closed")
		}
	})
	tc := &testClient{t: t, nc: client, fr: amqp.NewFrameReader(client, 64<<10)}
	tc.fr.SetMaxFrameSize(0)
	return tc, c, served
}

func (tc *testClient) write(b []byte) {
	tc.t.Helper()
	tc.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.nc.Write(b); err != nil {
		tc.t.Fatalf("write: %v", err)
	}
}

func (tc *testClient) send(ch uint16, m amqp.Method) {
	tc.t.Helper()
	tc.write(amqp.AppendMethodFrame(nil, ch, m))
}

// next returns the next method (skipping heartbeats and content frames).
func (tc *testClient) next() (amqp.Method, error) {
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := tc.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if f.Type == amqp.FrameMethod {
			return amqp.DecodeMethod(f.Payload)
		}
	}
}

func (tc *testClient) expect(want amqp.Method) amqp.Method {
	tc.t.Helper()
	m, err := tc.next()
	if err != nil {
		tc.t.Fatalf("waiting for %s: %v", want.Name(), err)
	}
	if m.Name() != want.Name() {
		tc.t.Fatalf("got %s %+v, want %s", m.Name(), m, want.Name())
	}
	return m
}

// handshake runs the client's side up to connection.open-ok.
func (tc *testClient) handshake(heartbeat uint16) {
	tc.t.Helper()
	tc.write(amqp.ProtocolHeader)
	tc.expect(&amqp.ConnectionStart{})
	tc.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	tune := tc.expect(&amqp.ConnectionTune{}).(*amqp.ConnectionTune)
	tc.send(0, &amqp.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: tune.FrameMax, Heartbeat: heartbeat})
	tc.send(0, &amqp.ConnectionOpen{VirtualHost: "/"})
	tc.expect(&amqp.ConnectionOpenOk{})
}

// A connection the broker refuses to register (it is shutting down) gets connection.close 320
// and ends; Unregistered is still called.
func TestConn_RefusedRegistrationCloses(t *testing.T) {
	unregistered := make(chan struct{}, 1)
	env := &Env{
		Registered:   func(*Conn) bool { return false },
		Unregistered: func(*Conn) { unregistered <- struct{}{} },
	}
	tc, _, served := serveTest(t, env)
	tc.handshake(0)
	cl := tc.expect(&amqp.ConnectionClose{}).(*amqp.ConnectionClose)
	if cl.ReplyCode != uint16(amqp.ConnectionForced) {
		t.Fatalf("reply code %d, want 320", cl.ReplyCode)
	}
	tc.send(0, &amqp.ConnectionCloseOk{})
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	select {
	case <-unregistered:
	default:
		t.Fatal("Unregistered not called")
	}
}

// publishBurst returns basic.publish + header + body frames for n small unroutable messages.
func publishBurst(n int) []byte {
	var b []byte
	body := make([]byte, 1000)
	for range n {
		b = amqp.AppendMethodFrame(b, 1, &amqp.BasicPublish{RoutingKey: "nowhere"})
		b = amqp.AppendContent(b, 1, []byte{0, 0}, body, 131072)
	}
	return b
}

// writeAll writes b in pieces from another goroutine (the client keeps writing while the
// broker closes) and reports the first error.
func writeAll(nc net.Conn, b []byte) <-chan error {
	res := make(chan error, 1)
	go func() {
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for len(b) > 0 {
			n, err := nc.Write(b[:min(len(b), 64<<10)])
			if err != nil {
				res <- err
				return
			}
			b = b[n:]
		}
		res <- nil
	}()
	return res
}

// expectEOF waits for the broker to close its end.
func (tc *testClient) expectEOF() {
	tc.t.Helper()
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [4096]byte
	for {
		if _, err := tc.nc.Read(b[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tc.t.Fatal("the broker did not close the socket")
			}
			return
		}
	}
}

// A client may send connection.close ahead of frames it still had buffered (amqplib does):
// the broker answers close-ok and reads on, discarding, until the client closes its socket,
// so those writes succeed instead of meeting a reset (EPIPE, ECONNRESET), as with RabbitMQ.
func TestConn_ClientCloseReadsUntilClientCloses(t *testing.T) {
	tc, _, served := serveTest(t, &Env{})
	tc.handshake(0)
	tc.send(1, &amqp.ChannelOpen{})
	tc.expect(&amqp.ChannelOpenOk{})
	tc.write(publishBurst(2000))
	tc.send(0, &amqp.ConnectionClose{ReplyCode: 200, ReplyText: "bye"})
	wrote := writeAll(tc.nc, publishBurst(4000)) // ~4 MB the client had queued behind the close
	tc.expect(&amqp.ConnectionCloseOk{})
	if err := <-wrote; err != nil {
		t.Fatalf("the client's writes after connection.close failed: %v", err)
	}
	select {
	case <-served:
		t.Fatal("the connection ended before the client closed its socket")
	case <-time.After(50 * time.Millisecond):
	}
	tc.nc.Close()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the client closed")
	}
}

// After the broker closes the connection for an error (here a frame over frame_max, after
// which the stream cannot be parsed), it reads on until close-ok or the client's close: the
// client's writes in flight succeed and it reads the connection.close.
func TestConn_ServerCloseReadsUntilCloseOk(t *testing.T) {
	tc, _, served := serveTest(t, &Env{})
	tc.handshake(0)
	tc.send(1, &amqp.ChannelOpen{})
	tc.expect(&amqp.ChannelOpenOk{})
	oversized := amqp.AppendFrame(nil, amqp.FrameBody, 1, make([]byte, 200000))
	wrote := writeAll(tc.nc, append(oversized, publishBurst(4000)...))
	cl := tc.expect(&amqp.ConnectionClose{}).(*amqp.ConnectionClose)
	if cl.ReplyCode != uint16(amqp.FrameError) {
		t.Fatalf("closed with %d %s, want 501", cl.ReplyCode, cl.ReplyText)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("the client's writes after the broker's connection.close failed: %v", err)
	}
	tc.send(0, &amqp.ConnectionCloseOk{})
	tc.nc.(*net.TCPConn).CloseWrite()
	tc.expectEOF()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// A connection blocked by a resource alarm is not read, so the client's heartbeats wait in
// the socket: the missed-heartbeat check is paused meanwhile (as RabbitMQ pauses its monitor
// for a blocked connection), and the connection is still there when the alarm clears.
func TestConn_BlockedConnectionSurvivesHeartbeatCheck(t *testing.T) {
	var mu sync.Mutex
	cleared := make(chan struct{})
	reason := "memory"
	env := &Env{Alarm: func() (string, <-chan struct{}) {
		mu.Lock()
		defer mu.Unlock()
		return reason, cleared
	}}
	tc, _, served := serveTest(t, env)
	tc.handshake(1)
	tc.send(1, &amqp.ChannelOpen{})
	tc.expect(&amqp.ChannelOpenOk{})
	tc.write(publishBurst(1)) // the reader blocks on the alarm at this publish
	stopBeats := make(chan struct{})
	go func() { // the client keeps its heartbeats going, into the unread socket
		for {
			select {
			case <-stopBeats:
				return
			case <-time.After(300 * time.Millisecond):
				tc.nc.Write(amqp.AppendHeartbeat(nil))
			}
		}
	}()
	defer close(stopBeats)
	select {
	case <-served:
		t.Fatal("the blocked connection was closed for missed heartbeats")
	case <-time.After(3500 * time.Millisecond): // over two heartbeat intervals
	}
	mu.Lock()
	reason = ""
	close(cleared)
	mu.Unlock()
	tc.send(1, &amqp.QueueDeclare{Queue: "after-alarm"})
	tc.expect(&amqp.QueueDeclareOk{})
}

// Refused because the node is being drained: the 320 says so (the client goes to another node).
func TestConn_RefusedWhileDrainingSaysDrained(t *testing.T) {
	env := &Env{Registered: func(*Conn) bool { return false }, Draining: func() bool { return true }}
	tc, _, _ := serveTest(t, env)
	tc.handshake(0)
	cl := tc.expect(&amqp.ConnectionClose{}).(*amqp.ConnectionClose)
	if cl.ReplyCode != uint16(amqp.ConnectionForced) || !strings.Contains(cl.ReplyText, DrainReason) {
		t.Fatalf("close %d %q, want 320 with %q", cl.ReplyCode, cl.ReplyText, DrainReason)
	}
	tc.send(0, &amqp.ConnectionCloseOk{})
}
