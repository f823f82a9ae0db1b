package conformance

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Channel close handshakes that cross on the wire (AMQP 0-9-1 §1.5.2.5 channel.close,
// §1.5.2.6 close-ok, and §2.3.7: "if peers ignore Close, deadlock can happen when both peers
// send Close at the same time"). The server closes a channel for a soft error while the
// client's own channel.close is already on its way: each side answers the other's close with
// close-ok. RabbitMQ answers the client's close with close-ok and keeps the channel number
// taken until the client's close-ok for its own close arrives; the connection stays open.

// rawPublishFrames encodes basic.publish (§1.8.3.7) with a one-byte body.
func rawPublishFrames(channel uint16, exchange, key string) []byte {
	b := rawEncodeFrame(rawFrameMethod, channel, rawMethod(60, 40, rawArgs(nil).short(0).shortstr(exchange).shortstr(key).octet(0)), rawFrameEnd)
	b = append(b, rawEncodeFrame(rawFrameHeader, channel, rawContentHeader(1), rawFrameEnd)...)
	return append(b, rawEncodeFrame(rawFrameBody, channel, []byte("x"), rawFrameEnd)...)
}

// rawChannelClose encodes channel.close 200 from the client.
func rawChannelClose(channel uint16) []byte {
	return rawEncodeFrame(rawFrameMethod, channel, rawMethod(20, 40, rawArgs(nil).short(200).shortstr("bye").short(0).short(0)), rawFrameEnd)
}

// rawDeclareExclusive declares a server-named exclusive queue on channel and waits for
// declare-ok (§1.7.2.1: reserved-1, queue, passive|durable|exclusive|auto-delete|no-wait, arguments).
func (rc *rawConn) rawDeclareExclusive(channel uint16) {
	rc.t.Helper()
	rc.sendMethod(channel, 50, 10, rawArgs(nil).short(0).shortstr("").octet(0x04).table())
	rc.expectMethod(channel, 50, 11)
}

func TestChannelClose_CrossingClosesKeepConnection(t *testing.T) {
	t.Parallel()
	missing := uniqueName(t, "missing")
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		rc, _ := rawHandshake(t, nil)
		rc.openChannel(1)
		// The publish fails (404) and the client's close follows it before the server's close
		// reaches the client.
		rc.write(append(rawPublishFrames(1, missing, "k"), rawChannelClose(1)...))
		cl := rawDecodeClose(t, rc.expectMethod(1, 20, 40))
		if cl.code != 404 || cl.classID != 60 || cl.methodID != 40 {
			t.Fatalf("channel.close %d %q (%d.%d), want 404 for basic.publish", cl.code, cl.text, cl.classID, cl.methodID)
		}
		rc.expectMethod(1, 20, 41)    // the answer to the client's close
		rc.sendMethod(1, 20, 41, nil) // the client answers the server's close
		rc.openChannel(2)
		rc.rawDeclareExclusive(2)
		rc.openChannel(1) // the number is free again once both closes are answered
		rc.rawDeclareExclusive(1)
	})
	t.Run("amqp091", func(t *testing.T) {
		t.Parallel()
		c := dial(t)
		closed := c.NotifyClose(make(chan *amqp.Error, 1))
		for i := range 20 {
			ch1, err := c.Channel()
			if err != nil {
				t.Fatalf("round %d: channel.open: %v", i, err)
			}
			if err := ch1.PublishWithContext(ctx(t), missing, "k", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
				t.Fatalf("round %d: publish: %v", i, err)
			}
			ch1.Close() // crosses the server's 404 close, or comes after it: either is fine
			ch2, err := c.Channel()
			if err != nil {
				t.Fatalf("round %d: channel.open after the crossing close: %v", i, err)
			}
			if _, err := ch2.QueueDeclare("", false, true, true, false, nil); err != nil {
				t.Fatalf("round %d: queue.declare after the crossing close: %v", i, err)
			}
			if err := ch2.Close(); err != nil {
				t.Fatalf("round %d: channel.close: %v", i, err)
			}
		}
		select {
		case e := <-closed:
			t.Fatalf("connection closed: %v", e)
		default:
		}
	})
}

// While a channel the server closed waits for the client's close-ok, every frame on it but
// channel.close and close-ok is discarded (§1.5.2.5), except channel.open: RabbitMQ answers it
// with 504 CHANNEL_ERROR "second 'channel.open' seen", as for a channel that is open.
func TestChannelClose_OpenBeforeCloseOkIsChannelError(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, nil)
	rc.openChannel(1)
	rc.write(append(rawPublishFrames(1, uniqueName(t, "missing"), "k"), rawChannelClose(1)...))
	rc.expectMethod(1, 20, 40)
	rc.expectMethod(1, 20, 41)
	rc.sendMethod(1, 50, 10, rawArgs(nil).short(0).shortstr("").octet(0x04).table()) // discarded
	rc.sendMethod(1, 20, 10, rawArgs(nil).shortstr(""))
	cl := rc.expectConnectionCloseCode(504)
	if cl.classID != 20 || cl.methodID != 10 {
		t.Errorf("close names method %d.%d, want 20.10", cl.classID, cl.methodID)
	}
}

// A publish refused with a channel error (404 for a missing exchange) is never confirmed
// (https://www.rabbitmq.com/confirms.html: the channel closes; unconfirmed publishes are
// neither acked nor nacked), also when the client closes the channel and the connection
// right after it. The publish before it is acked.
func TestConfirm_FailedPublishNeverAcked(t *testing.T) {
	t.Parallel()
	missing := uniqueName(t, "missing")
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		rc, _ := rawHandshake(t, nil)
		rc.openChannel(1)
		rc.sendMethod(1, 85, 10, rawArgs(nil).octet(0)) // confirm.select
		rc.expectMethod(1, 85, 11)
		rc.write(append(rawPublishFrames(1, "", uniqueName(t, "nowhere")), rawPublishFrames(1, missing, "k")...))
		var got []string
		for {
			f := rc.nextFrame()
			c, m := f.classMethod()
			if c == 60 && m == 80 { // basic.ack: delivery-tag, multiple
				args := f.payload[4:]
				tag := uint64(0)
				for _, b := range args[:8] {
					tag = tag<<8 | uint64(b)
				}
				if tag != 1 || args[8] != 0 {
					t.Fatalf("basic.ack tag %d multiple=%d: the failed publish 2 is acked", tag, args[8])
				}
				got = append(got, "ack")
				continue
			}
			if c != 20 || m != 40 {
				t.Fatalf("got %v, want basic.ack 1 then channel.close", f)
			}
			if cl := rawDecodeClose(t, f.payload[4:]); cl.code != 404 {
				t.Fatalf("channel.close %d %q, want 404", cl.code, cl.text)
			}
			break
		}
		if len(got) != 1 {
			t.Fatalf("publish 1 (unroutable) got %d acks before the channel closed, want 1", len(got))
		}
	})
	t.Run("amqp091", func(t *testing.T) {
		t.Parallel()
		for i := range 10 {
			c, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			ch, err := c.Channel()
			if err != nil {
				t.Fatalf("channel.open: %v", err)
			}
			if err := ch.Confirm(false); err != nil {
				t.Fatalf("confirm.select: %v", err)
			}
			confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 4))
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx(t), missing, "k", false, false, amqp.Publishing{Body: []byte("x")})
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			ch.Close()
			c.Close()
			select {
			case <-dc.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: the confirmation never settled after the connection closed", i)
			}
			if dc.Acked() {
				t.Fatalf("round %d: the publish to a missing exchange was acked", i)
			}
			for cf := range confirms {
				if cf.Ack {
					t.Fatalf("round %d: basic.ack for tag %d, a publish to a missing exchange", i, cf.DeliveryTag)
				}
			}
		}
	})
}
