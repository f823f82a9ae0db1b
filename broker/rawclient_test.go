package broker

import (
	"net"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqp"
)

// rawClient speaks AMQP over a plain socket with the codec, so that a test controls exactly
// what the client reads and writes (a real client library reads and heartbeats on its own).
type rawClient struct {
	t  testing.TB
	nc net.Conn
	fr *amqp.FrameReader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := &rawClient{t: t, nc: nc, fr: amqp.NewFrameReader(nc, 64<<10)}
	rc.fr.SetMaxFrameSize(0)
	return rc
}

func (rc *rawClient) send(ch uint16, m amqp.Method) {
	rc.t.Helper()
	rc.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.nc.Write(amqp.AppendMethodFrame(nil, ch, m)); err != nil {
		rc.t.Fatalf("send %s: %v", m.Name(), err)
	}
}

// next reads the next method, skipping heartbeats (content frames are returned as nil).
func (rc *rawClient) next() (amqp.Method, error) {
	rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if f.Type != amqp.FrameMethod {
			if f.Type == amqp.FrameHeartbeat {
				continue
			}
			return nil, nil
		}
		return amqp.DecodeMethod(f.Payload)
	}
}

func (rc *rawClient) expect(want amqp.Method) amqp.Method {
	rc.t.Helper()
	m, err := rc.next()
	if err != nil {
		rc.t.Fatalf("waiting for %s: %v", want.Name(), err)
	}
	if m == nil || m.Name() != want.Name() {
		rc.t.Fatalf("got %v, want %s", m, want.Name())
	}
	return m
}

// handshakeUntilOpen runs the handshake up to tune-ok (heartbeat as given): the next step
// is connection.open.
func (rc *rawClient) handshakeUntilOpen(heartbeat uint16) {
	rc.t.Helper()
	if _, err := rc.nc.Write(amqp.ProtocolHeader); err != nil {
		rc.t.Fatal(err)
	}
	rc.expect(&amqp.ConnectionStart{})
	rc.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	tune := rc.expect(&amqp.ConnectionTune{}).(*amqp.ConnectionTune)
	rc.send(0, &amqp.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: tune.FrameMax, Heartbeat: heartbeat})
}

// handshake opens the connection on vhost "/".
func (rc *rawClient) handshake(heartbeat uint16) {
	rc.t.Helper()
	rc.handshakeUntilOpen(heartbeat)
	rc.send(0, &amqp.ConnectionOpen{VirtualHost: "/"})
	rc.expect(&amqp.ConnectionOpenOk{})
}
