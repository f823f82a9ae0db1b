package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Warren only (issue 18 item 3): N concurrent publishes of maximum-size (128 MiB) messages
// into one queue. The broker's RSS above its baseline stays within largeMsgPeakMultiple times
// the bytes held while they are received and queued (the second message goes to the queue's
// spill: encoding and the log's write buffers copy it for a moment), settles within
// largeMsgRSSMultiple times once they are queued, gains nothing lasting from a basic.get of
// one (the body goes out from the message, not from a copy), and returns to within
// largeMsgRSSMargin of the baseline once the queue is deleted (memory handed back to the OS).
func TestMemory_LargeMessagesBoundedAndReturned(t *testing.T) {
	onlyWarren(t)
	if os.Getenv("CONFORMANCE_RACE") != "" {
		t.Skip("the race detector multiplies the broker's memory: RSS bounds do not apply")
	}
	const (
		n    = 2
		size = 128 << 20
		held = n * size
	)
	b, err := StartBroker(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	pid := b.Cmd.Process.Pid
	rss := func() int64 { return backlogRSS(t, pid) }
	// settle waits (bounded) until RSS is at most limit above base and returns it.
	settle := func(base, limit int64) int64 {
		var r int64
		for deadline := time.Now().Add(8 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if r = rss(); r-base <= limit || time.Now().After(deadline) {
				return r
			}
		}
	}
	c := dialURL(t, b.URL)
	ch := openChannel(t, c)
	q := uniqueName(t)
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	base := rss()

	var peak int64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak = max(peak, rss())
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	body := make([]byte, size)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc, err := amqp.Dial(b.URL)
			if err != nil {
				errs <- err
				return
			}
			defer pc.Close()
			pch, err := pc.Channel()
			if err != nil {
				errs <- err
				return
			}
			pch.Confirm(false)
			conf, err := pch.PublishWithDeferredConfirm("", q, false, false, amqp.Publishing{Body: body, MessageId: fmt.Sprint(i)})
			if err != nil {
				errs <- err
				return
			}
			if !conf.Wait() {
				errs <- fmt.Errorf("publish %d nacked", i)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	body = nil
	heldRSS := settle(base, int64(largeMsgRSSMultiple*held))
	d, ok, err := ch.Get(q, true)
	if err != nil || !ok || len(d.Body) != size {
		t.Fatalf("basic.get: ok=%v err=%v", ok, err)
	}
	d.Body = nil
	getRSS := settle(base, int64(largeMsgRSSMultiple*held))
	if _, err := ch.QueueDelete(q, false, false, false); err != nil {
		t.Fatal(err)
	}
	afterRSS := settle(base, largeMsgRSSMargin)
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	x := func(v int64) float64 { return float64(v-base) / held }
	t.Logf("RSS: baseline %.0f MiB; %d x %d MiB published: peak %.0f MiB (%.2fx the bytes held, above baseline), held %.0f MiB (%.2fx); after basic.get %.0f MiB; after delete %.0f MiB",
		mib(base), n, size>>20, mib(peak), x(peak), mib(heldRSS), x(heldRSS), mib(getRSS), mib(afterRSS))
	if x(peak) > largeMsgPeakMultiple {
		t.Errorf("receiving %d MiB peaked at %.2fx the bytes held (bound %.1fx)", held>>20, x(peak), largeMsgPeakMultiple)
	}
	if x(heldRSS) > largeMsgRSSMultiple {
		t.Errorf("holding %d MiB took %.2fx the bytes held (bound %.1fx)", held>>20, x(heldRSS), largeMsgRSSMultiple)
	}
	if x(getRSS) > largeMsgRSSMultiple {
		t.Errorf("after basic.get: %.2fx the bytes held (bound %.1fx)", x(getRSS), largeMsgRSSMultiple)
	}
	if afterRSS-base > largeMsgRSSMargin {
		t.Errorf("after the delete RSS is %.0f MiB above the baseline (margin %d MiB)", mib(afterRSS-base), largeMsgRSSMargin>>20)
	}
}

// The bounds TestMemory_LargeMessagesBoundedAndReturned checks (RSS above the baseline, as
// multiples of the bytes of the messages held).
const (
	largeMsgPeakMultiple = 4.0
	largeMsgRSSMultiple  = 1.5
	largeMsgRSSMargin    = 48 << 20
)
