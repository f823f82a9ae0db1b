package broker

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"
)

func startTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.AMQPListen = "127.0.0.1:0"
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Log = zerolog.New(zerolog.NewTestWriter(t))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A disk (or memory) alarm blocks publishing connections with connection.blocked and holds
// their messages back; consumers keep working; connection.unblocked follows when it clears.
func TestAlarm_BlocksPublishersUntilCleared(t *testing.T) {
	s := startTestServer(t, Config{MemoryHighWatermark: -1, DiskFreeLimit: -1})
	url := "amqp://guest:guest@" + s.Addr().String() + "/"
	pub, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	blocked := pub.NotifyBlocked(make(chan amqp.Blocking, 4))
	pch, _ := pub.Channel()
	q, err := pch.QueueDeclare("", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	cch, _ := cons.Channel()

	s.SetAlarmLimits(0, 1<<62) // no disk has that much free: disk alarm
	if m, d := s.Alarms(); m || !d {
		t.Fatalf("alarms memory=%v disk=%v, want disk only", m, d)
	}
	if err := pch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("held")}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-blocked:
		if !b.Active || b.Reason != "low on disk" {
			t.Fatalf("blocking %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.blocked")
	}
	// The consumer connection is not blocked: it can still declare and get (nothing yet).
	time.Sleep(100 * time.Millisecond)
	if _, ok, err := cch.Get(q.Name, true); err != nil || ok {
		t.Fatalf("get during the alarm: ok=%v err=%v (want empty: the publish is held)", ok, err)
	}
	s.SetAlarmLimits(0, 0)
	select {
	case b := <-blocked:
		if b.Active {
			t.Fatalf("blocking %+v, want unblocked", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.unblocked")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, ok, err := cch.Get(q.Name, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if string(m.Body) != "held" {
				t.Fatalf("body %q", m.Body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("held message never arrived after unblock")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
