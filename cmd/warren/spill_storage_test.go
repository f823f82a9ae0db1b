package main

import (
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/wal"
)

// A queue whose spill is damaged on disk (a byte flipped in the middle of a segment) does not
// lose persistent messages silently: reading back fails, the loss is counted and logged, and
// the queue goes out of service (404 with the reason; its consumer cancelled). After a restart
// every unacknowledged message is back from the queue's log, in order.
func TestStorage_CorruptedSpillTakesQueueOutOfService(t *testing.T) {
	data := t.TempDir()
	start := func() *broker.Server {
		t.Helper()
		log := zerolog.New(zerolog.NewTestWriter(t))
		cfg := wal.Config{Dir: filepath.Join(data, "wal"), NoSync: true, SegmentSize: 256 << 10, Logger: log}
		enc, err := loadEnc(t, data)
		if err != nil {
			t.Fatal(err)
		}
		st, err := openStorage(cfg, filepath.Join(data, "spill"), enc)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:0", DataDir: data, Log: log, Storage: st,
			MaxQueueMemory: 32 << 10, MemoryHighWatermark: -1, DiskFreeLimit: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	url := "amqp://guest:guest@" + srv.Addr().String() + "/"
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := conn.Channel()
	if _, err := ch.QueueDeclare("spilled", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.Confirm(false)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	const n = 2000
	body := make([]byte, 1024)
	for i := range n {
		binary.BigEndian.PutUint32(body, uint32(i))
		ch.Publish("", "spilled", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
		if c := <-confirms; !c.Ack {
			t.Fatalf("publish %d nacked", i)
		}
	}
	q := srv.VHost("/").Queue("spilled")
	if in := q.Info(); in.PagedOut < n/2 {
		t.Fatalf("only %d of %d messages paged out", in.PagedOut, n)
	}
	time.Sleep(200 * time.Millisecond) // the spill's writer (not fsynced) gets its records out
	damaged := 0
	filepath.WalkDir(filepath.Join(data, "spill"), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || damaged > 0 {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) < 64<<10 {
			return err
		}
		for i := len(b) / 2; i < len(b)/2+64; i++ {
			b[i] ^= 0x5a
		}
		damaged++
		return os.WriteFile(path, b, 0o600)
	})
	if damaged == 0 {
		t.Fatal("no spill segment to damage")
	}

	cch, _ := conn.Channel()
	cancelled := cch.NotifyCancel(make(chan string, 1))
	cch.Qos(100, 0, false)
	deliveries, err := cch.Consume("spilled", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	func() {
		for {
			select {
			case d, ok := <-deliveries:
				if !ok {
					return
				}
				if got := binary.BigEndian.Uint32(d.Body); got != uint32(acked) {
					t.Fatalf("delivery %d is #%d", acked, got)
				}
				d.Ack(false)
				acked++
			case <-cancelled:
				return
			case <-time.After(10 * time.Second):
				t.Fatalf("no cancel after %d deliveries", acked)
			}
		}
	}()
	if acked >= n {
		t.Fatal("every message came back: the damage went unnoticed")
	}
	if got := q.Info().SpillLost; got == 0 {
		t.Fatal("no loss counted")
	}
	_, err = cch.QueueDeclarePassive("spilled", true, false, false, false, nil)
	if e, ok := err.(*amqp.Error); !ok || e.Code != amqp.NotFound || !strings.Contains(e.Reason, "out of service") {
		t.Fatalf("passive declare of the damaged queue: %v", err)
	}
	conn.Close()
	srv.Close()

	// After a restart the queue is back with every message not acked, from its log.
	srv = start()
	defer srv.Close()
	q = srv.VHost("/").Queue("spilled")
	if q == nil {
		t.Fatal("queue not recovered")
	}
	if ready, _, _ := q.Counts(); ready != n-acked {
		t.Fatalf("recovered %d messages, want %d", ready, n-acked)
	}
	conn, err = amqp.Dial("amqp://guest:guest@" + srv.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ = conn.Channel()
	for i := acked; i < n; i++ {
		d, ok, err := ch.Get("spilled", true)
		if err != nil || !ok {
			t.Fatalf("get %d: ok=%v err=%v", i, ok, err)
		}
		if got := binary.BigEndian.Uint32(d.Body); got != uint32(i) {
			t.Fatalf("recovered message %d is #%d", i, got)
		}
	}
}
