package session

import (
	"errors"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/vhost"
)

// confirmConn returns a connection with channel 1 open in confirm mode, a queue "q" whose
// messages persist to a fakeLog, and a queue "full" that refuses every publish
// (x-overflow reject-publish, x-max-length 0).
func confirmConn(t *testing.T) (*Conn, *fakeLog) {
	t.Helper()
	c := testConn(t)
	_, _, err := c.vh.DeclareQueue(vhost.QueueDecl{Name: "q", Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	q := c.vh.Queue("q")
	log := &fakeLog{}
	q.SetLog(log)
	if _, _, err := c.vh.DeclareQueue(vhost.QueueDecl{Name: "full", Args: amqp.Table{"x-overflow": "reject-publish", "x-max-length": int32(0)}}); err != nil {
		t.Fatal(err)
	}
	feed(t, c, method(1, &amqp.ChannelOpen{}))
	feed(t, c, method(1, &amqp.ConfirmSelect{}))
	sent(t, c)
	return c, log
}

// A publish is confirmed only once routing decided it: when the log's commit goroutine
// completes the previous publish between the new publish getting its sequence number and
// being routed, the flush it runs must not answer the new one. A persistent message must
// then wait for its own write (acked only when durable), and a message refused by a full
// reject-publish queue must be nacked, never acked.
func TestChannel_ConfirmNotBeforeRouting(t *testing.T) {
	for _, tc := range []struct {
		name       string
		second     []byte // the second publish
		wantBefore []string
		wantAfter  []string // after the second append completes (if it was appended)
	}{
		{
			name:       "persistent",
			second:     publishFrames(1, "", "q", persistent, []byte("two")),
			wantBefore: []string{"ack 1"},
			wantAfter:  []string{"ack 2"},
		},
		{
			name:       "rejected",
			second:     publishFrames(1, "", "full", amqp.Properties{}, []byte("two")),
			wantBefore: []string{"ack 1", "nack 2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, log := confirmConn(t)
			feed(t, c, publishFrames(1, "", "q", persistent, []byte("one")))
			if got := confirmsSent(sent(t, c)); len(got) != 0 {
				t.Fatalf("confirms before the first write is durable: %v", got)
			}
			testHookSeq = func(seq uint64) {
				if seq == 2 {
					log.complete(0, nil) // the commit goroutine finishes publish 1 now
				}
			}
			defer func() { testHookSeq = nil }()
			feed(t, c, tc.second)
			if got := confirmsSent(sent(t, c)); !slices.Equal(got, tc.wantBefore) {
				t.Fatalf("confirms sent %v, want %v", got, tc.wantBefore)
			}
			if log.pending() > 0 {
				log.complete(1, nil)
			}
			if got := confirmsSent(sent(t, c)); !slices.Equal(got, tc.wantAfter) {
				t.Fatalf("confirms sent once publish 2 is durable: %v, want %v", got, tc.wantAfter)
			}
		})
	}
}

// Each confirmed publish waits for its own writes: the channel reuses its wait only for
// publishes that no queue had to write (so those cost no allocation), never one a log still
// holds. Writes that complete out of order, a transient publish, a refusal by overflow and a
// failed write among them are each answered for their own sequence number.
func TestChannel_ConfirmEachPublishWaitsForItsOwnWrites(t *testing.T) {
	c, log := confirmConn(t)
	feed(t, c, publishFrames(1, "", "q", persistent, []byte("1")))           // append 0
	feed(t, c, publishFrames(1, "", "q", amqp.Properties{}, []byte("2")))    // not written
	feed(t, c, publishFrames(1, "", "q", persistent, []byte("3")))           // append 1
	feed(t, c, publishFrames(1, "", "full", amqp.Properties{}, []byte("4"))) // refused
	feed(t, c, publishFrames(1, "", "q", persistent, []byte("5")))           // append 2
	if got := confirmsSent(sent(t, c)); len(got) != 0 {
		t.Fatalf("confirms before any write is durable: %v", got)
	}
	log.complete(2, nil)
	if got := confirmsSent(sent(t, c)); len(got) != 0 {
		t.Fatalf("publish 5 durable: confirms %v, want none (1 still waits)", got)
	}
	log.complete(0, nil)
	if got := confirmsSent(sent(t, c)); !slices.Equal(got, []string{"ack 2 multiple"}) {
		t.Fatalf("publish 1 durable: confirms %v, want [ack 2 multiple]", got)
	}
	log.complete(1, errors.New("disk gone"))
	if got := confirmsSent(sent(t, c)); !slices.Equal(got, []string{"nack 3", "nack 4", "ack 5"}) {
		t.Fatalf("publish 3 failed: confirms %v, want [nack 3 nack 4 ack 5]", got)
	}
}

// A publish that fails (404 for a missing exchange) is never confirmed: the channel closes
// with no basic.ack for it, as RabbitMQ does, while the publishes before it are acked.
func TestChannel_ConfirmNotForFailedPublish(t *testing.T) {
	c, _ := confirmConn(t)
	feed(t, c, publishFrames(1, "", "nowhere", amqp.Properties{}, []byte("one")))
	feed(t, c, publishFrames(1, "missing", "q", amqp.Properties{}, []byte("two")))
	fs := sent(t, c)
	if got := confirmsSent(fs); !slices.Equal(got, []string{"ack 1"}) {
		t.Fatalf("confirms sent %v, want [ack 1]", got)
	}
	if cl, ok := fs[len(fs)-1].m.(*amqp.ChannelClose); !ok || cl.ReplyCode != uint16(amqp.NotFound) {
		t.Fatalf("last frame %#v, want channel.close 404", fs[len(fs)-1].m)
	}
}

// tx.commit-ok waits until every persistent message of the transaction is durable (the same
// question as for confirms: nothing is answered before the log has it).
func TestChannel_TxCommitOkAfterDurable(t *testing.T) {
	c := testConn(t)
	_, _, err := c.vh.DeclareQueue(vhost.QueueDecl{Name: "q", Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	q := c.vh.Queue("q")
	log := &fakeLog{}
	q.SetLog(log)
	feed(t, c, method(1, &amqp.ChannelOpen{}))
	feed(t, c, method(1, &amqp.TxSelect{}))
	feed(t, c, publishFrames(1, "", "q", persistent, []byte("one")))
	feed(t, c, publishFrames(1, "", "q", persistent, []byte("two")))
	sent(t, c)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		if err := feedErr(c, method(1, &amqp.TxCommit{})); err != nil {
			t.Error(err)
		}
	}()
	for log.pending() < 2 {
		runtime.Gosched()
	}
	log.complete(0, nil)
	select {
	case <-committed:
		t.Fatal("tx.commit returned before every message was durable")
	case <-time.After(50 * time.Millisecond):
	}
	for _, f := range sent(t, c) {
		if _, ok := f.m.(*amqp.TxCommitOk); ok {
			t.Fatal("tx.commit-ok sent before every message was durable")
		}
	}
	log.complete(1, nil)
	<-committed
	fs := sent(t, c)
	if len(fs) != 1 {
		t.Fatalf("sent %d frames after the commit, want tx.commit-ok", len(fs))
	}
	if _, ok := fs[0].m.(*amqp.TxCommitOk); !ok {
		t.Fatalf("sent %#v, want tx.commit-ok", fs[0].m)
	}
}

// Closes that cross: the client's channel.close arrives after we closed the channel for an
// error. It gets close-ok, and the channel number stays taken until the client's close-ok
// for our close; that close-ok is not a frame on an unopened channel.
func TestChannel_CrossingCloseWaitsForCloseOk(t *testing.T) {
	c, _ := confirmConn(t)
	feed(t, c, append(publishFrames(1, "missing", "k", amqp.Properties{}, []byte("x")), method(1, &amqp.ChannelClose{ReplyCode: 200})...))
	fs := sent(t, c)
	if len(fs) != 2 {
		t.Fatalf("sent %d frames, want channel.close and close-ok", len(fs))
	}
	if cl, ok := fs[0].m.(*amqp.ChannelClose); !ok || cl.ReplyCode != 404 || cl.CauseClassID != 60 || cl.CauseMethodID != 40 {
		t.Fatalf("first frame %#v, want channel.close 404 naming basic.publish", fs[0].m)
	}
	if _, ok := fs[1].m.(*amqp.ChannelCloseOk); !ok {
		t.Fatalf("second frame %#v, want channel.close-ok", fs[1].m)
	}
	if c.channels[1] == nil {
		t.Fatal("channel freed before the client's close-ok")
	}
	feed(t, c, method(1, &amqp.ChannelCloseOk{}))
	if c.channels[1] != nil {
		t.Fatal("channel still taken after the client's close-ok")
	}
	feed(t, c, method(1, &amqp.ChannelOpen{}))
	if fs := sent(t, c); len(fs) != 1 {
		t.Fatalf("sent %d frames, want channel.open-ok", len(fs))
	} else if _, ok := fs[0].m.(*amqp.ChannelOpenOk); !ok {
		t.Fatalf("sent %#v, want channel.open-ok", fs[0].m)
	}
}
