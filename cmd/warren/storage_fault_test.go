package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/wal"
)

// A full disk (every write fails with ENOSPC, injected; the free-space check is off, so only
// the failed write raises the alarm): the publish whose write failed is nacked, the disk alarm
// goes on at once and blocks the publisher, and a declare fails with 541 as the definitions log
// cannot write. Once writes work again the alarm clears without a restart, the publishes held
// meanwhile are confirmed and declares work. After a restart the queue holds exactly the
// confirmed messages, and the failed declare left nothing behind.
func TestStorage_FullDiskNacksThenRecovers(t *testing.T) {
	data := t.TempDir()
	var full atomic.Bool
	start := func() (*broker.Server, string) {
		t.Helper()
		log := zerolog.New(zerolog.NewTestWriter(t))
		cfg := wal.Config{Dir: filepath.Join(data, "wal"), Logger: log, FailWrite: func(string) error {
			if full.Load() {
				return &fs.PathError{Op: "write", Path: "segment", Err: syscall.ENOSPC}
			}
			return nil
		}}
		enc, err := loadEnc(t, data)
		if err != nil {
			t.Fatal(err)
		}
		st, err := openStorage(cfg, filepath.Join(data, "spill"), enc)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:0", DataDir: data, Log: log, Storage: st,
			MemoryHighWatermark: -1, DiskFreeLimit: -1})
		if err != nil {
			st.Close()
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv, "amqp://guest:guest@" + srv.Addr().String() + "/"
	}
	dial := func(url string) (*amqp.Connection, *amqp.Channel) {
		t.Helper()
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return conn, ch
	}
	srv, url := start()
	conn, ch := dial(url)
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 16))
	publish := func(i int) {
		t.Helper()
		if err := ch.Publish("", "q", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: fmt.Appendf(nil, "m%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	confirm := func(what string, wantAck bool) {
		t.Helper()
		select {
		case c := <-confirms:
			if c.Ack != wantAck {
				t.Fatalf("%s: confirm %d ack=%v, want ack=%v", what, c.DeliveryTag, c.Ack, wantAck)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no confirm", what)
		}
	}
	var want []string
	for i := range 10 {
		publish(i)
		confirm("before the fault", true)
		want = append(want, fmt.Sprintf("m%02d", i))
	}

	full.Store(true)
	publish(10)
	confirm("the write fails", false)
	// The alarm went on before the nack was sent, not at the next check.
	if _, disk := srv.Alarms(); !disk {
		t.Fatal("no disk alarm when the failed write was nacked")
	}
	_, ch2 := dial(url)
	_, err := ch2.QueueDeclare("during", true, false, false, false, nil)
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.InternalError {
		t.Fatalf("declare during the fault: %v, want 541", err)
	}
	publish(11) // the publisher is blocked: held
	publish(12)
	select {
	case b := <-blocked:
		if !b.Active || b.Reason != "low on disk" {
			t.Fatalf("blocking %+v, want low on disk", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.blocked")
	}
	select {
	case c := <-confirms:
		t.Fatalf("confirm %d (ack=%v) while blocked", c.DeliveryTag, c.Ack)
	case <-time.After(300 * time.Millisecond):
	}

	full.Store(false) // space is back
	select {
	case b := <-blocked:
		if b.Active {
			t.Fatalf("blocking %+v, want unblocked", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still blocked after writes work again")
	}
	confirm("held publish", true)
	confirm("held publish", true)
	want = append(want, "m11", "m12")
	_, ch3 := dial(url)
	if _, err := ch3.QueueDeclare("after", true, false, false, false, nil); err != nil {
		t.Fatalf("declare after the fault: %v", err)
	}
	conn.Close()
	srv.Close()

	srv, url = start()
	defer srv.Close()
	_, ch = dial(url)
	if _, err := ch.QueueDeclarePassive("after", true, false, false, false, nil); err != nil {
		t.Fatalf("queue declared after the fault is gone: %v", err)
	}
	var got []string
	for {
		m, ok, err := ch.Get("q", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(m.Body))
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the restart the queue holds %v, want the confirmed %v", got, want)
	}
	if _, err := ch.QueueDeclarePassive("during", true, false, false, false, nil); err == nil {
		t.Fatal("the queue whose declare failed exists after the restart")
	}
}
