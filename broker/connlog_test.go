package broker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"
)

// syncBuffer is a log sink the test reads while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the JSON log lines with message msg.
func (s *syncBuffer) lines(msg string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// Connections are logged at info as RabbitMQ logs them: opened with the peer, user, vhost and
// the client's connection name, closed with the reason; a refused login with the user.
func TestServer_LogsConnectionsAtInfo(t *testing.T) {
	var logs syncBuffer
	s, err := New(Config{AMQPListen: "127.0.0.1:0", DataDir: t.TempDir(), Log: zerolog.New(&logs).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := "amqp://guest:guest@" + s.Addr().String() + "/"
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("orders-app")
	c, err := amqp.DialConfig(url, amqp.Config{Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().String()
	c.Close()
	if _, err := amqp.Dial("amqp://guest:wrong@" + s.Addr().String() + "/"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	wait := func(msg string) map[string]any {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if l := logs.lines(msg); len(l) > 0 {
				return l[0]
			}
		}
		t.Fatalf("no %q line in:\n%s", msg, logs.b.String())
		return nil
	}
	opened, closed := wait("connection opened"), wait("connection closed")
	for _, l := range []map[string]any{opened, closed} {
		for k, v := range map[string]any{"level": "info", "user": "guest", "vhost": "/", "remote": local, "client_name": "orders-app"} {
			if l[k] != v {
				t.Errorf("%s: %s=%v, want %v", l["message"], k, l[k], v)
			}
		}
	}
	if r := fmt.Sprint(closed["reason"]); !strings.Contains(r, "client closed the connection") || !strings.Contains(r, "200") {
		t.Errorf("close reason %q", r)
	}
	if f := wait("authentication failed"); f["user"] != "guest" {
		t.Errorf("authentication failure: %v", f)
	}
	// A connection the server closes (here: drained) says so, with 320.
	c, err = amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Drain()
	for deadline := time.Now().Add(10 * time.Second); len(logs.lines("connection closed")) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no second close line:\n%s", logs.b.String())
		}
	}
	if r := fmt.Sprint(logs.lines("connection closed")[1]["reason"]); !strings.Contains(r, "320 CONNECTION_FORCED - node is being drained") {
		t.Errorf("drained connection's close reason %q", r)
	}
}

// A connection whose handshake ends after Drain looked at the connections is refused (before,
// it registered after Drain had shut the others down, and stayed on the drained node).
func TestServer_DrainRefusesLateRegistration(t *testing.T) {
	s, err := New(Config{AMQPListen: "127.0.0.1:0", DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Drain()
	if s.register(nil) {
		t.Fatal("a connection registered while the node was drained")
	}
	s.Revive()
	if !s.register(nil) {
		t.Fatal("a connection refused after revive")
	}
	s.mu.Lock()
	delete(s.conns, nil)
	s.mu.Unlock()
}
