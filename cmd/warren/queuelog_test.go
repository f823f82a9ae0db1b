package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/wal"
)

// openTestStorage opens the storage adapter on data without keys.
func openTestStorage(t *testing.T, data string) *walStorage {
	t.Helper()
	enc, err := loadEnc(t, data)
	if err != nil {
		t.Fatal(err)
	}
	cfg := wal.Config{Dir: filepath.Join(data, "wal"), NoSync: true, Logger: zerolog.New(zerolog.NewTestWriter(t))}
	s, err := openStorage(cfg, filepath.Join(data, "spill"), enc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logExists reports whether the folder of the log of queue q in vhost vh exists.
func logExists(t *testing.T, data, vh, q string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(data, "wal", queueLogName(vh, q)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// replayed opens the log of q and returns the payloads it replays.
func replayed(t *testing.T, s *walStorage, vh, q string) []string {
	t.Helper()
	var got []string
	if _, err := s.OpenQueueLog(vh, q, func(_ uint64, p []byte, _ bool) error {
		got = append(got, string(p))
		return nil
	}); err != nil {
		t.Fatalf("open the log of %s/%s: %v", vh, q, err)
	}
	return got
}

// appendWait appends p to l and waits for its completion.
func appendWait(t *testing.T, l interface {
	Append([]byte, func(uint64, error)) uint64
}, p string) (uint64, error) {
	t.Helper()
	done := make(chan error, 1)
	off := l.Append([]byte(p), func(_ uint64, err error) { done <- err })
	select {
	case err := <-done:
		return off, err
	case <-time.After(10 * time.Second):
		t.Fatal("append not completed within 10s")
		return 0, nil
	}
}

// A durable queue's log exists on disk only from its first write: opening it (a declare, or a
// restart with the queue defined) creates nothing, nor do retirements, delivery marks, syncs,
// reads or a removal before that; the first append creates it. After a restart a queue that was
// never written to replays nothing and still has no log; a written one replays its records.
func TestStorage_QueueLogCreatedAtFirstWrite(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := openTestStorage(t, data)
	l, err := s.OpenQueueLog("v", "q", func(uint64, []byte, bool) error {
		t.Error("a new queue's log replays a record")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenQueueLog("v", "empty", nil); err != nil {
		t.Fatal(err)
	}
	l.Retire(1)
	l.MarkDelivered(1)
	sy, ok := l.(interface{ Sync() error })
	if !ok {
		t.Fatal("the queue log has no Sync: a publisher without confirms would not wait for the disk")
	}
	if err := sy.Sync(); err != nil {
		t.Fatalf("Sync before the first write: %v", err)
	}
	rd, ok := l.(interface{ Read(uint64) ([]byte, error) })
	if !ok {
		t.Fatal("the queue log has no Read: a stream could not read evicted messages back")
	}
	if _, err := rd.Read(1); !errors.Is(err, wal.ErrNotFound) {
		t.Fatalf("Read before the first write: %v, want wal.ErrNotFound", err)
	}
	if err := s.RemoveQueueLog("v", "empty"); err != nil {
		t.Fatalf("removing a log never written: %v", err)
	}
	if logExists(t, data, "v", "q") || logExists(t, data, "v", "empty") {
		t.Fatal("a log exists before the first write")
	}
	if _, err := s.OpenQueueLog("v", "empty", nil); err != nil { // declared again
		t.Fatal(err)
	}

	for i, p := range []string{"m1", "m2"} {
		off, err := appendWait(t, l, p)
		if err != nil || off != uint64(i+1) {
			t.Fatalf("append %s: offset %d, %v", p, off, err)
		}
	}
	if !logExists(t, data, "v", "q") {
		t.Fatal("no log after the first append")
	}
	if err := sy.Sync(); err != nil {
		t.Fatal(err)
	}
	if b, err := rd.Read(2); err != nil || string(b) != "m2" {
		t.Fatalf("Read(2) = %q, %v", b, err)
	}
	l.MarkDelivered(1)
	l.Retire(2)
	if err := sy.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStorage(t, data)
	if got := replayed(t, s, "v", "empty"); len(got) != 0 {
		t.Fatalf("the never written queue replays %q", got)
	}
	if got := replayed(t, s, "v", "q"); !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("the written queue replays %q, want [m1]", got)
	}
	if err := s.SweepQueueLogs(); err != nil {
		t.Fatal(err)
	}
	if logExists(t, data, "v", "empty") || !logExists(t, data, "v", "q") {
		t.Fatal("after a restart: want the written queue's log and no other")
	}
	if err := s.RemoveQueueLog("v", "q"); err != nil {
		t.Fatal(err)
	}
	if logExists(t, data, "v", "q") {
		t.Fatal("the removed log is still there")
	}
	s.Close()
}

// The start-up sweep removes the logs of queues that are not defined any more, and keeps the
// log a queue declared before the sweep creates after it (and, at the next start, the log of a
// queue that was defined and written).
func TestStorage_SweepKeepsLazilyCreatedLogs(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := openTestStorage(t, data)
	l, err := s.OpenQueueLog("v", "gone", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appendWait(t, l, "old"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openTestStorage(t, data) // "gone" is no longer defined: nothing opens its log
	lazy, err := s.OpenQueueLog("v", "lazy", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SweepQueueLogs(); err != nil {
		t.Fatal(err)
	}
	if logExists(t, data, "v", "gone") {
		t.Fatal("the log of a queue no longer defined was kept")
	}
	if _, err := appendWait(t, lazy, "new"); err != nil {
		t.Fatal(err)
	}
	if err := s.SweepQueueLogs(); err != nil {
		t.Fatal(err)
	}
	if !logExists(t, data, "v", "lazy") {
		t.Fatal("the sweep removed the log of a declared queue")
	}
	s.Close()

	s = openTestStorage(t, data)
	if got := replayed(t, s, "v", "lazy"); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("replayed %q, want [new]", got)
	}
	if err := s.SweepQueueLogs(); err != nil {
		t.Fatal(err)
	}
	if !logExists(t, data, "v", "lazy") {
		t.Fatal("the sweep removed the log of a defined queue")
	}
	s.Close()
}

// The encrypted storage test (TestStorage_Encryption) writes through logs created at their
// first append; this one checks that the cipher a lazily created log gets is its vhost's: a
// record sealed by vhost b's key does not open with the node key alone.
func TestStorage_LazyQueueLogUsesVHostKey(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	nodeK, bK := writeKey(t, root, "node"), writeKey(t, root, "b")
	open := func(args ...string) *walStorage {
		t.Helper()
		enc, err := loadEnc(t, data, args...)
		if err != nil {
			t.Fatal(err)
		}
		cfg := wal.Config{Dir: filepath.Join(data, "wal"), NoSync: true, Logger: zerolog.New(zerolog.NewTestWriter(t))}
		s, err := openStorage(cfg, filepath.Join(data, "spill"), enc)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open("--encryption-key-file", nodeK, "--vhost-key", "b="+bK)
	l, err := s.OpenQueueLog("b", "q", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appendWait(t, l, "sealed-for-b"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open("--encryption-key-file", nodeK)
	_, err = s.OpenQueueLog("b", "q", func(uint64, []byte, bool) error { return nil })
	if !errors.Is(err, wal.ErrCipher) {
		t.Fatalf("b's record opened without b's key: %v", err)
	}
	s.Close()
	s = open("--encryption-key-file", nodeK, "--vhost-key", "b="+bK)
	if got := replayed(t, s, "b", "q"); !slices.Equal(got, []string{"sealed-for-b"}) {
		t.Fatalf("replayed %q", got)
	}
	s.Close()
}

// When a queue's log cannot be created at its first write, the publish fails as an append to a
// failed log does: a publisher in confirm mode gets basic.nack, and nothing is on disk. Once the
// log can be created, the next persistent publish creates it, is confirmed, and survives a
// restart.
func TestStorage_QueueLogCreationFailureNacks(t *testing.T) {
	data := t.TempDir()
	start := func() *broker.Server {
		t.Helper()
		log := zerolog.New(zerolog.NewTestWriter(t))
		st := openTestStorage(t, data)
		srv, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:0", DataDir: data, Log: log, Storage: st,
			MemoryHighWatermark: -1, DiskFreeLimit: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	conn, err := amqp.Dial("amqp://guest:guest@" + srv.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if logExists(t, data, "/", "q") {
		t.Fatal("queue.declare created the queue's log")
	}
	// A file where the log's folder goes: creating the log fails.
	blocker := filepath.Join(data, "wal", queueLogName("/", "q"))
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	publish := func(body string, mode uint8) amqp.Confirmation {
		t.Helper()
		if err := ch.Publish("", "q", false, false, amqp.Publishing{DeliveryMode: mode, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-confirms:
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("no confirm for %s", body)
			return amqp.Confirmation{}
		}
	}
	if c := publish("transient", amqp.Transient); !c.Ack {
		t.Fatal("a transient message was nacked: it needs no log")
	}
	if c := publish("lost", amqp.Persistent); c.Ack {
		t.Fatal("a persistent message was confirmed while its queue's log could not be created")
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if c := publish("kept", amqp.Persistent); !c.Ack {
		t.Fatal("a persistent message was nacked once the log could be created")
	}
	if !logExists(t, data, "/", "q") {
		t.Fatal("no log after a confirmed persistent publish")
	}
	conn.Close()
	srv.Close()

	srv = start()
	defer srv.Close()
	conn, err = amqp.Dial("amqp://guest:guest@" + srv.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ = conn.Channel()
	d, ok, err := ch.Get("q", true)
	if err != nil || !ok || string(d.Body) != "kept" {
		t.Fatalf("after a restart: get %q ok=%v err=%v, want \"kept\"", d.Body, ok, err)
	}
	if _, ok, _ := ch.Get("q", true); ok {
		t.Fatal("more than the confirmed message came back")
	}
}

// BenchmarkQueueLog measures what a durable queue's log costs the storage (with fsync, as a node
// runs): op=declare opens the log of a new queue (a queue.declare), op=declare+write also
// appends one record and waits until it is durable (a queue's first persistent message).
func BenchmarkQueueLog(b *testing.B) {
	for _, op := range []string{"declare", "declare+write"} {
		b.Run("op="+op, func(b *testing.B) {
			data := filepath.Join(b.TempDir(), "data")
			enc, err := registerEncryptionFlags(flag.NewFlagSet("b", flag.ContinueOnError)).load(data, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			s, err := openStorage(wal.Config{Dir: filepath.Join(data, "wal")}, filepath.Join(data, "spill"), enc)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			payload := make([]byte, 100)
			done := make(chan error, 1)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				l, err := s.OpenQueueLog("/", fmt.Sprintf("q%d", i), nil)
				if err != nil {
					b.Fatal(err)
				}
				if op == "declare+write" {
					l.Append(payload, func(_ uint64, err error) { done <- err })
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
