package session

import (
	"io"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
	"github.com/warrenmq/warren/broker/vhost"
)

// benchConn is a connection past its handshake whose writer drains to a loopback TCP peer
// that discards everything: the delivery path (queue dispatch, Consumer.Deliver, the writer,
// the socket write) without a client.
func benchConn(b *testing.B) (*Conn, *Channel) {
	client, server := tcpPair(b)
	go io.Copy(io.Discard, client)
	c := NewConn(&Env{}, server, 1)
	c.pacer = newReadPacer(server)
	c.frameMax = 131072
	ch := newChannel(c, 1)
	c.channels[1] = ch
	c.writerWG.Add(1)
	go c.writeLoop()
	b.Cleanup(func() {
		close(c.done)
		c.writerWG.Wait()
	})
	return c, ch
}

// BenchmarkConn_Deliver publishes to a queue whose no-ack consumer's connection writes to a
// loopback socket: bytes per second through dispatch, frame encoding and the writer.
func BenchmarkConn_Deliver(b *testing.B) {
	for _, size := range []int{100, 64 << 10, 4 << 20} {
		b.Run("size="+itoa(size), func(b *testing.B) {
			_, ch := benchConn(b)
			q := queue.New("bench", queue.Options{})
			cs := &consumer{tag: "ctag", ch: ch, q: q.Ref(), noAck: true}
			if err := q.AddConsumer(cs, false, nil); err != nil {
				b.Fatal(err)
			}
			msg, err := message.New("", "bench", []byte{0, 0}, make([]byte, size))
			if err != nil {
				b.Fatal(err)
			}
			maxReady := max(1, (8<<20)/size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				q.Publish(msg, nil)
				if i++; i%64 == 0 {
					for ready, _, _ := q.Counts(); ready > maxReady; ready, _, _ = q.Counts() {
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
			for ready, _, _ := q.Counts(); ready > 0; ready, _, _ = q.Counts() {
				time.Sleep(50 * time.Microsecond)
			}
		})
	}
}

// BenchmarkChannel_Publish feeds basic.publish, content header and body frames of an
// unroutable message to a channel: content assembly, message parsing and routing.
func BenchmarkChannel_Publish(b *testing.B) {
	for _, size := range []int{100, 64 << 10, 4 << 20} {
		b.Run("size="+itoa(size), func(b *testing.B) {
			c, ch := benchConn(b)
			c.vh = vhost.New("/", nil)
			method := amqp.AppendMethodFrame(nil, 1, &amqp.BasicPublish{RoutingKey: "nowhere"})
			header := amqp.AppendContentHeader(nil, 1, uint64(size), []byte{0, 0})
			frames := []amqp.Frame{
				{Type: amqp.FrameMethod, Channel: 1, Payload: method[7 : len(method)-1]},
				{Type: amqp.FrameHeader, Channel: 1, Payload: header[7 : len(header)-1]},
			}
			body := make([]byte, size)
			for chunk := int(c.frameMax) - 8; len(body) > 0; body = body[min(chunk, len(body)):] {
				frames = append(frames, amqp.Frame{Type: amqp.FrameBody, Channel: 1, Payload: body[:min(chunk, len(body))]})
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				for _, f := range frames {
					if err := ch.handleFrame(f); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
