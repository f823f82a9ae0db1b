package vhost

import (
	"fmt"
	"strings"
	"testing"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
)

func publishN(t *testing.T, v *VHost, q string, n int) {
	t.Helper()
	for i := range n {
		m, err := message.New("", q, []byte{0, 0}, []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		var r Router
		if _, err := v.Publish(&r, m, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func ready(q *queue.Queue) int { r, _, _ := q.Counts(); return r }

func TestPolicy_AppliesToMatchingQueuesByPriority(t *testing.T) {
	v := New("/", nil)
	a, _, _ := v.declareQueue(QueueDecl{Name: "orders.a"}, false)
	b, _, _ := v.declareQueue(QueueDecl{Name: "other"}, false)
	if err := v.SetPolicy(Policy{Name: "low", Pattern: "^orders\\.", ApplyTo: "queues", Priority: 1, Definition: amqp.Table{"max-length": int64(5)}}); err != nil {
		t.Fatal(err)
	}
	if err := v.SetPolicy(Policy{Name: "high", Pattern: "^orders\\.", ApplyTo: "queues", Priority: 9, Definition: amqp.Table{"max-length": float64(2)}}); err != nil {
		t.Fatal(err)
	}
	publishN(t, v, "orders.a", 10)
	publishN(t, v, "other", 10)
	if got := ready(a); got != 2 {
		t.Fatalf("orders.a holds %d, want 2 (highest-priority policy)", got)
	}
	if got := ready(b); got != 10 {
		t.Fatalf("other holds %d, want 10 (no policy)", got)
	}
	if v.QueuePolicy(a) != "high" || v.QueuePolicy(b) != "" {
		t.Fatalf("policies %q %q", v.QueuePolicy(a), v.QueuePolicy(b))
	}
	// A queue declared later gets the policy too.
	c, _, _ := v.declareQueue(QueueDecl{Name: "orders.c"}, false)
	publishN(t, v, "orders.c", 4)
	if got := ready(c); got != 2 {
		t.Fatalf("orders.c holds %d, want 2", got)
	}
	// Deleting the policy lifts the limit (the lower one applies now).
	if ok, err := v.DeletePolicy("high"); !ok || err != nil {
		t.Fatal("delete failed")
	}
	publishN(t, v, "orders.c", 10)
	if got := ready(c); got != 5 {
		t.Fatalf("orders.c holds %d after deleting the high policy, want 5", got)
	}
}

func TestPolicy_QueueArgumentsCombineAsRabbitMQ(t *testing.T) {
	v := New("/", nil)
	// numeric limit: the lower of argument and policy wins
	q1, _, _ := v.declareQueue(QueueDecl{Name: "q1", Args: amqp.Table{"x-max-length": int32(3)}}, false)
	q2, _, _ := v.declareQueue(QueueDecl{Name: "q2", Args: amqp.Table{"x-max-length": int32(30)}}, false)
	// non-numeric: the argument wins
	q3, _, _ := v.declareQueue(QueueDecl{Name: "q3", Args: amqp.Table{"x-dead-letter-exchange": "mine"}}, false)
	if err := v.SetPolicy(Policy{Name: "p", Pattern: "^q", Definition: amqp.Table{"max-length": int64(10), "dead-letter-exchange": "policy-dlx"}}); err != nil {
		t.Fatal(err)
	}
	if c := q1.Config(); c.MaxLength != 3 {
		t.Fatalf("q1 max-length %d, want 3", c.MaxLength)
	}
	if c := q2.Config(); c.MaxLength != 10 {
		t.Fatalf("q2 max-length %d, want 10", c.MaxLength)
	}
	if c := q3.Config(); c.DLX != "mine" || c.MaxLength != 10 {
		t.Fatalf("q3 %+v", c)
	}
	if c := q1.Config(); c.DLX != "policy-dlx" {
		t.Fatalf("q1 dlx %q", c.DLX)
	}
}

func TestPolicy_Validation(t *testing.T) {
	v := New("/", nil)
	bad := []Policy{
		{Name: "re", Pattern: "(", Definition: amqp.Table{"max-length": int64(1)}},
		{Name: "applyto", Pattern: ".*", ApplyTo: "nothing", Definition: amqp.Table{"max-length": int64(1)}},
		{Name: "unknown", Pattern: ".*", Definition: amqp.Table{"no-such-key": int64(1)}},
		{Name: "type", Pattern: ".*", Definition: amqp.Table{"max-length": "ten"}},
		{Name: "empty", Pattern: ".*"},
	}
	for _, p := range bad {
		if err := v.SetPolicy(p); err == nil {
			t.Errorf("policy %s accepted", p.Name)
		}
	}
}

func TestPolicy_AlternateExchange(t *testing.T) {
	v := New("/", nil)
	v.DeclareExchange(ExchangeDecl{Name: "main", Type: "direct"})
	v.DeclareExchange(ExchangeDecl{Name: "ae", Type: "fanout"})
	q, _, _ := v.declareQueue(QueueDecl{Name: "unrouted"}, false)
	v.BindQueue("unrouted", "ae", "", nil, nil)
	if err := v.SetPolicy(Policy{Name: "ae", Pattern: "^main$", ApplyTo: "exchanges", Definition: amqp.Table{"alternate-exchange": "ae"}}); err != nil {
		t.Fatal(err)
	}
	m, _ := message.New("main", "nowhere", []byte{0, 0}, []byte("x"))
	var r Router
	if err := v.Route(&r, "main", "nowhere", m); err != nil {
		t.Fatal(err)
	}
	if len(r.Queues) != 1 || r.Queues[0] != q.Ref() {
		t.Fatalf("routed to %d queues, want the alternate exchange's queue", len(r.Queues))
	}
}

// RabbitMQ's policies often exclude the amq.* names with a look-ahead, which Go's RE2
// refuses; such patterns fall back to a backtracking engine and match as in RabbitMQ.
// RabbitMQ 3.x's classic mirroring keys (ha-*) are accepted, kept and ignored.
func TestPolicy_LookAheadPatternAndMirroringKeys(t *testing.T) {
	v := New("/", nil)
	p := Policy{Name: "all-but-amq", Pattern: `^(?!amq\.).*`, ApplyTo: "queues",
		Definition: amqp.Table{"ha-mode": "all", "ha-sync-mode": "automatic", "max-length": int64(1)}}
	if err := v.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want string
	}{{"orders", "all-but-amq"}, {"amq.gen-x", ""}, {"xamq.y", "all-but-amq"}} {
		q, _, err := v.declareQueue(QueueDecl{Name: c.name, ServerNamed: strings.HasPrefix(c.name, "amq.")}, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := v.QueuePolicy(q); got != c.want {
			t.Errorf("queue %s: policy %q, want %q", c.name, got, c.want)
		}
	}
	got := v.Policies()[0].Definition
	if got["ha-mode"] != "all" || got["ha-sync-mode"] != "automatic" {
		t.Errorf("mirroring keys not kept: %v", got)
	}
	if err := v.SetPolicy(Policy{Name: "x", Pattern: "(?<", Definition: amqp.Table{"max-length": int64(1)}}); err == nil {
		t.Error("a pattern neither engine takes was accepted")
	}
}

// RabbitMQ 3.10 accepts a policy's message-ttl and expires beyond the ten-year limit of the
// queue arguments (any integer, 1e20 from JSON too); the queue holds them at ten years, so
// deadlines cannot overflow (issue 18). Queue arguments beyond it are refused.
func TestPolicy_TTLBeyondTenYearsHeldAtTheLimit(t *testing.T) {
	v := New("/", nil)
	q, _, _ := v.declareQueue(QueueDecl{Name: "big"}, false)
	for _, val := range []any{int64(9223372036854775807), float64(1e20)} {
		if err := v.SetPolicy(Policy{Name: "p", Pattern: "^big$", ApplyTo: "queues", Definition: amqp.Table{"message-ttl": val, "expires": val}}); err != nil {
			t.Fatalf("policy with %v refused: %v", val, err)
		}
		if c := q.Config(); c.MessageTTL != message.MaxTTL || c.Expires != message.MaxTTL {
			t.Fatalf("policy %v: message TTL %d, expires %d; want %d", val, c.MessageTTL, c.Expires, message.MaxTTL)
		}
	}
	publishN(t, v, "big", 1)
	if got := ready(q); got != 1 {
		t.Fatalf("queue holds %d messages, want 1", got)
	}
	if err := v.SetPolicy(Policy{Name: "p", Pattern: "^big$", ApplyTo: "queues", Definition: amqp.Table{"message-ttl": int64(-1)}}); err == nil {
		t.Fatal("negative message-ttl accepted")
	}
	if _, _, err := v.declareQueue(QueueDecl{Name: "args", Args: amqp.Table{"x-message-ttl": int64(message.MaxTTL + 1)}}, false); err == nil {
		t.Fatal("x-message-ttl beyond ten years accepted")
	}
}
