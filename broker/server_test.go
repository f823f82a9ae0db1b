package broker

import (
	"net"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	wire "github.com/warrenmq/warren/amqp"
	"go.uber.org/goleak"
)

// Clients that vanish at any point (before the protocol header, mid-handshake, mid-frame,
// mid-content) leave no goroutine behind once the server closes, and other clients keep
// working meanwhile.
func TestServer_VanishingClientsLeakNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	s := startTestServer(t, Config{MemoryHighWatermark: -1, DiskFreeLimit: -1})
	addr := s.Addr().String()
	good, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	gch, _ := good.Channel()
	q, _ := gch.QueueDeclare("", false, false, true, false, nil)

	raw := func(payload ...[]byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range payload {
			c.Write(p)
		}
		time.Sleep(20 * time.Millisecond)
		c.Close()
	}
	header := []byte("AMQP\x00\x00\x09\x01")
	raw()                                 // nothing at all
	raw(header[:4])                       // half a protocol header
	raw(header)                           // header, then gone before start-ok
	raw(header, []byte{1, 0, 0, 0, 0, 1}) // half a frame header
	// A full session that vanishes mid-content: use a real client, then cut its socket.
	c, err := amqp.DialConfig("amqp://guest:guest@"+addr+"/", amqp.Config{Dial: func(network, a string) (net.Conn, error) {
		nc, err := net.Dial(network, a)
		if err == nil {
			go func() { time.Sleep(200 * time.Millisecond); nc.Close() }()
		}
		return nc, err
	}})
	if err == nil {
		ch, _ := c.Channel()
		for i := 0; i < 1000 && ch != nil; i++ {
			if ch.Publish("", q.Name, false, false, amqp.Publishing{Body: make([]byte, 100000)}) != nil {
				break
			}
		}
		c.Close()
	}
	if err := gch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("still fine")}); err != nil {
		t.Fatalf("good client publish: %v", err)
	}
	good.Close()
	// Wait for the server to notice every vanished client, then close it.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Connections()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(s.Connections()); n != 0 {
		t.Fatalf("%d connections still registered", n)
	}
	s.Close()
}

// A client that finishes its handshake after Close took its list of connections is refused
// (320 CONNECTION_FORCED) instead of being registered and waited for: Close returns.
func TestServer_CloseRefusesLateHandshake(t *testing.T) {
	s := startTestServer(t, Config{MemoryHighWatermark: -1, DiskFreeLimit: -1})
	rc := dialRaw(t, s.Addr().String())
	rc.handshakeUntilOpen(0)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	for { // Close has taken its snapshot once closed is set (both under s.mu)
		s.mu.Lock()
		c := s.closed
		s.mu.Unlock()
		if c {
			break
		}
		time.Sleep(time.Millisecond)
	}
	rc.send(0, &wire.ConnectionOpen{VirtualHost: "/"})
	m, err := rc.next()
	// The client keeps its socket open and says nothing more: Close must not wait for it.
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close still waiting for a connection that registered after it started")
	}
	if err != nil {
		t.Fatalf("no answer to connection.open: %v", err)
	}
	if cl, ok := m.(*wire.ConnectionClose); !ok || cl.ReplyCode != uint16(wire.ConnectionForced) {
		t.Fatalf("got %#v, want connection.close 320", m)
	}
}
