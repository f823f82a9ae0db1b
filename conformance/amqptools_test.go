package conformance

// The rabbitmq-c command-line tools (Debian amqp-tools): amqp-declare-queue, amqp-publish,
// amqp-get, amqp-consume and amqp-delete-queue, run as processes against the broker under test.
// What they send is checked with amqp091-go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// amqpTools are the binaries these tests run.
var amqpTools = []string{"amqp-declare-queue", "amqp-publish", "amqp-get", "amqp-consume", "amqp-delete-queue"}

// toolResult is what one run of a tool printed and how it ended.
type toolResult struct {
	stdout, stderr string
	code           int // exit code; -1 if it did not exit by itself
}

// needAmqpTools skips the test when a binary is missing and returns the URL to give --url:
// librabbitmq reads the path as the vhost, and "amqp://h:p/" would mean the vhost "".
func needAmqpTools(t *testing.T) string {
	t.Helper()
	for _, b := range amqpTools {
		if _, err := exec.LookPath(b); err != nil {
			clientMissing(t, "amqp-tools test skipped: %s not found (%v); install Debian's amqp-tools", b, err)
		}
	}
	u, err := pikaURL(brokerURL)
	if err != nil {
		t.Fatalf("broker URL %q: %v", brokerURL, err)
	}
	return u
}

// amqpTool runs one tool with stdin (may be nil), bounded by 20 s. --url is always given in its
// long form: amqp-delete-queue uses -u for --if-unused.
func amqpTool(t *testing.T, u string, stdin []byte, tool string, args ...string) toolResult {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, tool, append([]string{"--url=" + u}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := toolResult{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case c.Err() != nil:
		t.Fatalf("%s %q did not finish within 20s; stderr: %s", tool, args, r.stderr)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %q: %v", tool, args, err)
	}
	return r
}

// mustTool is amqpTool that fails the test unless the tool exits with 0.
func mustTool(t *testing.T, u string, stdin []byte, tool string, args ...string) string {
	t.Helper()
	r := amqpTool(t, u, stdin, tool, args...)
	if r.code != 0 {
		t.Fatalf("%s %q exited with %d; stderr: %s", tool, args, r.code, r.stderr)
	}
	return r.stdout
}

// deleteQueueAtEnd deletes q (if it still exists) when the test ends.
func deleteQueueAtEnd(t *testing.T, q string) {
	t.Cleanup(func() {
		c, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			ch.QueueDelete(q, false, false, false)
		}
	})
}

// queueDepth returns the ready-message and consumer counts of q (passive declare on a channel
// of its own), and false if q does not exist.
func queueDepth(t *testing.T, c *amqp.Connection, q string) (messages, consumers int, ok bool) {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("channel.open: %v", err)
	}
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	if err != nil {
		var e *amqp.Error
		if errors.As(err, &e) && e.Code == amqp.NotFound {
			return 0, 0, false
		}
		t.Fatalf("passive queue.declare %s: %v", q, err)
	}
	return st.Messages, st.Consumers, true
}

// waitDepth waits (bounded) until q holds messages ready messages and consumers consumers.
func waitDepth(t *testing.T, c *amqp.Connection, q string, messages, consumers int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, n, ok := queueDepth(t, c, q)
		if ok && m == messages && n == consumers {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s: %d ready, %d consumers (exists: %v); want %d ready, %d consumers",
				q, m, n, ok, messages, consumers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAmqpTools_PublishPropertiesGetAndDelete: amqp-declare-queue creates the queue and prints
// its name; amqp-publish sends a message through the default exchange (AMQP 0-9-1 §3.1.3.1)
// with the content type, encoding, headers, reply-to and delivery mode given on its command
// line; amqp-get (§1.8.3.10 basic.get) prints the body; amqp-delete-queue (§1.7.2.9
// queue.delete) removes the queue.
func TestAmqpTools_PublishPropertiesGetAndDelete(t *testing.T) {
	u := needAmqpTools(t)
	c := dial(t)
	q := uniqueName(t)
	deleteQueueAtEnd(t, q)

	if out := mustTool(t, u, nil, "amqp-declare-queue", "--queue="+q); strings.TrimSpace(out) != q {
		t.Fatalf("amqp-declare-queue printed %q, want %q", out, q)
	}
	waitDepth(t, c, q, 0, 0)

	body := "hello from amqp-publish"
	mustTool(t, u, nil, "amqp-publish", "--routing-key="+q, "--content-type=text/plain",
		"--content-encoding=utf-8", "--header=x-origin: amqp-tools", "--header=x-case: one",
		"--reply-to=replies", "--persistent", "--body="+body)
	waitDepth(t, c, q, 1, 0)

	ch := openChannel(t, c)
	m, ok, err := ch.Get(q, false)
	if err != nil || !ok {
		t.Fatalf("basic.get: ok=%v err=%v", ok, err)
	}
	if string(m.Body) != body {
		t.Errorf("body %q, want %q", m.Body, body)
	}
	if m.ContentType != "text/plain" || m.ContentEncoding != "utf-8" || m.ReplyTo != "replies" ||
		m.DeliveryMode != amqp.Persistent || m.Exchange != "" || m.RoutingKey != q {
		t.Errorf("content-type %q encoding %q reply-to %q delivery-mode %d exchange %q key %q",
			m.ContentType, m.ContentEncoding, m.ReplyTo, m.DeliveryMode, m.Exchange, m.RoutingKey)
	}
	if m.Headers["x-origin"] != "amqp-tools" || m.Headers["x-case"] != "one" {
		t.Errorf("headers %v, want x-origin=amqp-tools and x-case=one", m.Headers)
	}
	if err := m.Nack(false, true); err != nil { // back to the queue for amqp-get
		t.Fatal(err)
	}
	waitDepth(t, c, q, 1, 0)

	if out := mustTool(t, u, nil, "amqp-get", "--queue="+q); out != body {
		t.Fatalf("amqp-get printed %q, want %q", out, body)
	}
	// amqp-get acked it: the queue is empty, and amqp-get on an empty queue (basic.get-empty)
	// prints nothing and exits with 2.
	waitDepth(t, c, q, 0, 0)
	if r := amqpTool(t, u, nil, "amqp-get", "--queue="+q); r.code != 2 || r.stdout != "" {
		t.Fatalf("amqp-get on an empty queue: exit %d, stdout %q, stderr %q; want exit 2, no output",
			r.code, r.stdout, r.stderr)
	}

	// amqp-delete-queue prints the number of messages deleted with the queue.
	mustTool(t, u, nil, "amqp-publish", "--routing-key="+q, "--body=left behind")
	waitDepth(t, c, q, 1, 0)
	if out := mustTool(t, u, nil, "amqp-delete-queue", "--queue="+q); strings.TrimSpace(out) != "1" {
		t.Fatalf("amqp-delete-queue printed %q, want 1", out)
	}
	if _, _, ok := queueDepth(t, c, q); ok {
		t.Fatalf("queue %s still exists after amqp-delete-queue", q)
	}
}

// TestAmqpTools_ConsumeCountRunsCommandPerMessage: amqp-publish --line-buffered sends one
// message per input line (the newline included); amqp-consume -c N with prefetch 2
// (§1.8.3.1 basic.qos, §1.8.3.3 basic.consume) runs `cat` once per message with the body on its
// stdin, acks each, and stops after N; the rest stays in the queue (a prefetched, unacked
// message is requeued when the tool disconnects). With --no-ack the message it took is gone
// without an ack.
func TestAmqpTools_ConsumeCountRunsCommandPerMessage(t *testing.T) {
	u := needAmqpTools(t)
	c := dial(t)
	q := uniqueName(t)
	deleteQueueAtEnd(t, q)
	mustTool(t, u, nil, "amqp-declare-queue", "--queue="+q)

	var bodies []string
	for i := 1; i <= 7; i++ {
		bodies = append(bodies, fmt.Sprintf("line %d of %s\n", i, q))
	}
	mustTool(t, u, []byte(strings.Join(bodies, "")), "amqp-publish", "--routing-key="+q,
		"--line-buffered", "--content-type=text/plain")
	waitDepth(t, c, q, 7, 0)

	out := mustTool(t, u, nil, "amqp-consume", "--queue="+q, "--count=5", "--prefetch-count=2", "cat")
	if want := strings.Join(bodies[:5], ""); out != want {
		t.Fatalf("amqp-consume -c 5 cat printed %q, want the first five messages %q", out, want)
	}
	// Five acked, the other two (one perhaps prefetched, then requeued on close) still ready.
	waitDepth(t, c, q, 2, 0)

	ch := openChannel(t, c)
	m, ok, err := ch.Get(q, true)
	if err != nil || !ok {
		t.Fatalf("basic.get: ok=%v err=%v", ok, err)
	}
	if string(m.Body) != bodies[5] || m.ContentType != "text/plain" {
		t.Fatalf("sixth message: %q (%s), want %q (text/plain)", m.Body, m.ContentType, bodies[5])
	}

	// --no-ack (basic.consume no-ack, prefetch does not apply): the last one, taken for good.
	out = mustTool(t, u, nil, "amqp-consume", "--queue="+q, "--count=1", "--no-ack", "cat")
	if out != bodies[6] {
		t.Fatalf("amqp-consume --no-ack -c 1 cat printed %q, want %q", out, bodies[6])
	}
	waitDepth(t, c, q, 0, 0)
}

// TestAmqpTools_ConsumeBindsQueueToExchange: amqp-consume -q Q -e X -r K declares Q itself
// (non-durable, auto-delete), binds it to X with key K (queue.bind) and consumes, so it gets
// exactly the messages published to X with key K and none with another key; when it stops,
// its auto-delete queue goes with its consumer (§1.7.2.1 queue.declare auto-delete).
func TestAmqpTools_ConsumeBindsQueueToExchange(t *testing.T) {
	u := needAmqpTools(t)
	c, ch := dialChannel(t)
	q, ex := uniqueName(t, "q"), uniqueName(t, "x")
	deleteQueueAtEnd(t, q)
	if err := ch.ExchangeDeclare(ex, "direct", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.ExchangeDelete(ex, false, false) })

	res := make(chan toolResult, 1)
	cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		cmd := exec.CommandContext(cctx, "amqp-consume", "--url="+u, "--queue="+q, "--exchange="+ex,
			"--routing-key=wanted", "--count=2", "cat")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		r := toolResult{code: -1}
		err := cmd.Run()
		var ee *exec.ExitError
		if err == nil {
			r.code = 0
		} else if errors.As(err, &ee) && cctx.Err() == nil {
			r.code = ee.ExitCode()
		}
		r.stdout, r.stderr = out.String(), errOut.String()
		res <- r
	}()
	// Wait until the tool has declared, bound and started consuming.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, n, ok := queueDepth(t, c, q); ok && n == 1 {
			break
		}
		select {
		case r := <-res:
			t.Fatalf("amqp-consume exited early with %d; stderr: %s", r.code, r.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("amqp-consume did not start consuming within 10s")
		}
	}

	mustTool(t, u, nil, "amqp-publish", "--exchange="+ex, "--routing-key=other", "--body=not for us;")
	mustTool(t, u, nil, "amqp-publish", "--exchange="+ex, "--routing-key=wanted", "--body=first;")
	mustTool(t, u, nil, "amqp-publish", "--exchange="+ex, "--routing-key=wanted", "--body=second;")

	select {
	case r := <-res:
		if r.code != 0 {
			t.Fatalf("amqp-consume exited with %d; stderr: %s", r.code, r.stderr)
		}
		if r.stdout != "first;second;" {
			t.Fatalf("amqp-consume printed %q, want %q", r.stdout, "first;second;")
		}
	case <-time.After(15 * time.Second):
		cancel()
		<-res
		t.Fatal("amqp-consume -c 2 did not exit within 15s")
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, _, ok := queueDepth(t, c, q); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("auto-delete queue %s still exists 5s after its only consumer left", q)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAmqpTools_DurableServerNamedAndConditionalDelete: amqp-declare-queue --durable makes a
// durable queue (a non-durable redeclare is 406 PRECONDITION_FAILED, §1.7.2.1 queue.declare);
// an empty name makes a server-named queue (amq.gen-…); amqp-delete-queue --if-empty on a
// queue with a message is refused with 406 and leaves it in place.
func TestAmqpTools_DurableServerNamedAndConditionalDelete(t *testing.T) {
	u := needAmqpTools(t)
	c := dial(t)
	q := uniqueName(t)
	deleteQueueAtEnd(t, q)

	if out := mustTool(t, u, nil, "amqp-declare-queue", "--queue="+q, "--durable"); strings.TrimSpace(out) != q {
		t.Fatalf("amqp-declare-queue printed %q, want %q", out, q)
	}
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDeclare(q, false, false, false, false, nil)
	amqpErr(t, err, amqp.PreconditionFailed)
	// Redeclaring it durable, as the tool does, is fine.
	mustTool(t, u, nil, "amqp-declare-queue", "--queue="+q, "--durable")
	// amqp-consume with --exchange redeclares its queue non-durable and auto-delete: on this
	// durable queue that is 406 PRECONDITION_FAILED, and the tool fails instead of consuming.
	if r := amqpTool(t, u, nil, "amqp-consume", "--queue="+q, "--exchange=amq.direct", "--count=1", "cat"); r.code == 0 || !strings.Contains(r.stderr, "406") {
		t.Fatalf("amqp-consume -e on a durable queue: exit %d, stderr %q; want a failure with 406",
			r.code, r.stderr)
	}

	named := strings.TrimSpace(mustTool(t, u, nil, "amqp-declare-queue", "--queue="))
	deleteQueueAtEnd(t, named)
	if !regexp.MustCompile(`^amq\.gen-[A-Za-z0-9_-]+$`).MatchString(named) {
		t.Fatalf("server-named queue %q does not look like amq.gen-…", named)
	}
	waitDepth(t, c, named, 0, 0) // not exclusive: it outlived the tool's connection
	mustTool(t, u, nil, "amqp-delete-queue", "--queue="+named)
	if _, _, ok := queueDepth(t, c, named); ok {
		t.Fatalf("queue %s still exists after amqp-delete-queue", named)
	}

	mustTool(t, u, nil, "amqp-publish", "--routing-key="+q, "--body=keep me")
	waitDepth(t, c, q, 1, 0)
	r := amqpTool(t, u, nil, "amqp-delete-queue", "--queue="+q, "--if-empty")
	if r.code == 0 || !strings.Contains(r.stderr, "406") {
		t.Fatalf("amqp-delete-queue --if-empty on a non-empty queue: exit %d, stdout %q, stderr %q; "+
			"want a failure with 406", r.code, r.stdout, r.stderr)
	}
	waitDepth(t, c, q, 1, 0)
	if out := mustTool(t, u, nil, "amqp-delete-queue", "--queue="+q); strings.TrimSpace(out) != "1" {
		t.Fatalf("amqp-delete-queue printed %q, want 1", out)
	}
	if _, _, ok := queueDepth(t, c, q); ok {
		t.Fatalf("queue %s still exists after amqp-delete-queue", q)
	}
}
