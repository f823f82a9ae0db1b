package session

import (
	"testing"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/queue"
	"github.com/warrenmq/warren/broker/vhost"
)

// instantLog is a queue.Log whose appends are durable at once (done runs inside Append).
type instantLog struct{ next uint64 }

func (l *instantLog) Append(_ []byte, done func(uint64, error)) uint64 {
	l.next++ // only under the queue's lock
	if done != nil {
		done(l.next, nil)
	}
	return l.next
}
func (l *instantLog) Retire(...uint64)        {}
func (l *instantLog) MarkDelivered(...uint64) {}

// drain is a no-ack consumer that takes every message.
type drain struct{}

func (drain) Deliver(queue.Ref, queue.Entry) queue.Result { return queue.Settled }
func (drain) Tag() string                                 { return "drain" }
func (drain) Cancelled(queue.Ref)                         {}

// BenchmarkChannel_PublishConfirm feeds publishes of 100-byte messages to a channel, one read
// batch each (the confirm flush after every publish), through routing to a queue with a
// no-ack consumer: mode=plain without confirms, mode=transient with confirms, and
// mode=persistent with confirms to a queue whose log is durable at once.
func BenchmarkChannel_PublishConfirm(b *testing.B) {
	for _, mode := range []string{"plain", "transient", "persistent"} {
		b.Run("mode="+mode, func(b *testing.B) {
			c := testConn(b)
			_, _, err := c.vh.DeclareQueue(vhost.QueueDecl{Name: "q", Durable: true})
			if err != nil {
				b.Fatal(err)
			}
			q := c.vh.Queue("q")
			props := amqp.Properties{}
			if mode == "persistent" {
				q.SetLog(&instantLog{})
				props = persistent
			}
			if err := q.AddConsumer(drain{}, false, nil); err != nil {
				b.Fatal(err)
			}
			feed(b, c, method(1, &amqp.ChannelOpen{}))
			if mode != "plain" {
				feed(b, c, method(1, &amqp.ConfirmSelect{}))
			}
			body := make([]byte, 100)
			m := amqp.AppendMethodFrame(nil, 1, &amqp.BasicPublish{RoutingKey: "q"})
			h := amqp.AppendContentHeader(nil, 1, uint64(len(body)), props.AppendTo(nil))
			frames := []amqp.Frame{
				{Type: amqp.FrameMethod, Channel: 1, Payload: m[7 : len(m)-1]},
				{Type: amqp.FrameHeader, Channel: 1, Payload: h[7 : len(h)-1]},
				{Type: amqp.FrameBody, Channel: 1, Payload: body},
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				for _, f := range frames {
					if _, err := c.handleFrame(f); err != nil {
						b.Fatal(err)
					}
				}
				c.flushConfirms()
				c.outMu.Lock()
				c.out = c.out[:0]
				c.outMu.Unlock()
			}
		})
	}
}
