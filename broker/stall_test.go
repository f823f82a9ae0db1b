package broker

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	wire "github.com/warrenmq/warren/amqp"
)

// A consumer that stops reading its socket (qos 0, a large backlog) is disconnected within a
// bound, with heartbeats (missed heartbeats: 2 intervals without a byte from the client, while
// the writer is stuck on the full socket) and without (the send timeout); its unacked
// messages go back to the queue in their order, for the next consumer. RabbitMQ: 10-20 s with
// heartbeat 5 s, about 30 s through its send timeout.
func TestServer_StalledConsumerIsDisconnected(t *testing.T) {
	for _, tc := range []struct {
		name        string
		heartbeat   uint16
		sendTimeout time.Duration
	}{
		{"heartbeat=on", 1, time.Hour},
		{"heartbeat=off", 0, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startTestServer(t, Config{MemoryHighWatermark: -1, DiskFreeLimit: -1, SendTimeout: tc.sendTimeout})
			addr := s.Addr().String()
			const n, size = 6000, 4096
			qname := "stalled-" + tc.name
			pub, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			pch, _ := pub.Channel()
			if _, err := pch.QueueDeclare(qname, false, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			body := make([]byte, size)
			for i := 0; i < n; i++ {
				binary.BigEndian.PutUint32(body, uint32(i))
				if err := pch.Publish("", qname, false, false, amqp.Publishing{Body: body}); err != nil {
					t.Fatal(err)
				}
			}
			q := s.VHost("/").Queue(qname)
			waitFor(t, 10*time.Second, "the backlog to be queued", func() bool { r, _, _ := q.Counts(); return r == n })

			// The stalled consumer: a small receive buffer, consume with acks and no prefetch
			// limit, then never read (nor write) again.
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
			}}
			nc, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			rc := &rawClient{t: t, nc: nc, fr: wire.NewFrameReader(nc, 64<<10)}
			rc.fr.SetMaxFrameSize(0)
			rc.handshake(tc.heartbeat)
			rc.send(1, &wire.ChannelOpen{})
			rc.expect(&wire.ChannelOpenOk{})
			rc.send(1, &wire.BasicConsume{Queue: qname, ConsumerTag: "stalled"})
			rc.expect(&wire.BasicConsumeOk{})
			stalledAt := time.Now()
			waitFor(t, 10*time.Second, "deliveries to the stalled consumer", func() bool { _, u, _ := q.Counts(); return u > 0 })
			if _, unacked, _ := q.Counts(); unacked >= n {
				t.Fatalf("all %d messages went out: the backlog does not fill the socket", unacked)
			}

			// Disconnected within the bound: its consumer gone, nothing unacked.
			waitFor(t, 20*time.Second, "the stalled consumer to be disconnected", func() bool {
				_, u, c := q.Counts()
				return u == 0 && c == 0
			})
			took := time.Since(stalledAt)
			t.Logf("disconnected %v after the client stopped reading", took.Round(time.Millisecond))

			// Every message is back, in order, for another consumer.
			cch, _ := pub.Channel()
			cch.Qos(500, 0, false)
			deliveries, err := cch.Consume(qname, "", false, false, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			redelivered := 0
			for i := 0; i < n; i++ {
				select {
				case m := <-deliveries:
					if got := binary.BigEndian.Uint32(m.Body); got != uint32(i) {
						t.Fatalf("message %d is #%d: order lost", i, got)
					}
					if m.Redelivered {
						redelivered++
					}
					m.Ack(false)
				case <-time.After(10 * time.Second):
					t.Fatalf("got %d of %d messages", i, n)
				}
			}
			if redelivered == 0 {
				t.Fatal("no message came back redelivered: the stalled consumer held none")
			}
		})
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("timed out after %v waiting for %s", d, what))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
