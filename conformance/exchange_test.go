package conformance

// Exchanges (AMQP 0-9-1 §1.6 class exchange, §3.1.3 exchange types, RabbitMQ's exchange.bind
// extension and https://www.rabbitmq.com/tutorials/amqp-concepts.html#exchanges).

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// exchangeRouteCase is one publication and whether the binding must route it.
type exchangeRouteCase struct {
	key     string
	headers amqp.Table
	match   bool
}

// exchangeBindingCases groups the publications checked against one binding.
type exchangeBindingCases struct {
	key   string
	args  amqp.Table
	cases []exchangeRouteCase
}

// exchangeCheckRouting declares, per binding, a fresh exchange of kind with one queue bound by
// that binding, publishes each case (with publisher confirms, so routing is done when the
// confirm arrives) and asserts exactly the matching cases reached the queue.
func exchangeCheckRouting(t *testing.T, kind string, groups []exchangeBindingCases) {
	t.Helper()
	_, ch := dialChannel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm.select: %v", err)
	}
	for gi, g := range groups {
		ex := uniqueName(t, strconv.Itoa(gi))
		if err := ch.ExchangeDeclare(ex, kind, false, true, false, false, nil); err != nil {
			t.Fatalf("exchange.declare %s %s: %v", kind, ex, err)
		}
		defer ch.ExchangeDelete(ex, false, false)
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			t.Fatalf("queue.declare: %v", err)
		}
		defer ch.QueueDelete(q.Name, false, false, false)
		if err := ch.QueueBind(q.Name, g.key, ex, false, g.args); err != nil {
			t.Fatalf("queue.bind key %q args %v: %v", g.key, g.args, err)
		}
		var confirms []*amqp.DeferredConfirmation
		for i, c := range g.cases {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx(t), ex, c.key, false, false,
				amqp.Publishing{Headers: c.headers, Body: []byte(strconv.Itoa(i))})
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			confirms = append(confirms, dc)
		}
		for _, dc := range confirms {
			if ok, err := dc.WaitContext(ctx(t)); err != nil || !ok {
				t.Fatalf("publisher confirm: ack=%v err=%v", ok, err)
			}
		}
		got := map[int]bool{}
		for {
			m, ok, err := ch.Get(q.Name, true)
			if err != nil {
				t.Fatalf("basic.get: %v", err)
			}
			if !ok {
				break
			}
			i, _ := strconv.Atoi(string(m.Body))
			got[i] = true
		}
		for i, c := range g.cases {
			if got[i] != c.match {
				t.Errorf("%s binding key %q args %v, publish key %q headers %v: routed=%v, want %v",
					kind, g.key, g.args, c.key, c.headers, got[i], c.match)
			}
		}
	}
}

// exchangeKeys builds cases that publish by routing key only.
func exchangeKeys(match []string, noMatch []string) []exchangeRouteCase {
	var cs []exchangeRouteCase
	for _, k := range match {
		cs = append(cs, exchangeRouteCase{key: k, match: true})
	}
	for _, k := range noMatch {
		cs = append(cs, exchangeRouteCase{key: k})
	}
	return cs
}

// exchangeHeaders builds cases that publish by headers only (with a routing key the headers
// exchange must ignore).
func exchangeHeaders(match []amqp.Table, noMatch []amqp.Table) []exchangeRouteCase {
	var cs []exchangeRouteCase
	for _, h := range match {
		cs = append(cs, exchangeRouteCase{key: "ignored", headers: h, match: true})
	}
	for _, h := range noMatch {
		cs = append(cs, exchangeRouteCase{key: "ignored", headers: h})
	}
	return cs
}

// AMQP 0-9-1 §3.1.3.1: a direct exchange routes a message to queues whose binding key equals the
// routing key exactly (case-sensitive; the empty key is a key like any other).
func TestExchangeDirect_RoutesOnExactKey(t *testing.T) {
	t.Parallel()
	exchangeCheckRouting(t, "direct", []exchangeBindingCases{
		{key: "k", cases: exchangeKeys([]string{"k"}, []string{"K", "k2", "", "k.k", " k"})},
		{key: "", cases: exchangeKeys([]string{""}, []string{"k", " "})},
		{key: "a.b", cases: exchangeKeys([]string{"a.b"}, []string{"a.*", "a", "a.b.c"})},
	})
}

// AMQP 0-9-1 §3.1.3.2: a fanout exchange routes to every bound queue, ignoring routing and
// binding keys.
func TestExchangeFanout_IgnoresRoutingKey(t *testing.T) {
	t.Parallel()
	exchangeCheckRouting(t, "fanout", []exchangeBindingCases{
		{key: "k", cases: exchangeKeys([]string{"k", "other", "", "a.b.c"}, nil)},
		{key: "", cases: exchangeKeys([]string{"x", ""}, nil)},
	})
}

// AMQP 0-9-1 §3.1.3.3: a topic exchange matches dot-separated words; "*" matches exactly one
// word and "#" zero or more words. Words may be empty ("a..b" has an empty middle word, "a." an
// empty last one), but RabbitMQ treats the empty routing key as having no words at all.
func TestExchangeTopic_WildcardSemantics(t *testing.T) {
	t.Parallel()
	exchangeCheckRouting(t, "topic", []exchangeBindingCases{
		{key: "a.b.c", cases: exchangeKeys([]string{"a.b.c"}, []string{"a.b", "a.b.c.d", "A.b.c", "a.b.cc", ""})},
		{key: "*.b.*", cases: exchangeKeys([]string{"a.b.c", "x.b.y", ".b."}, []string{"a.b", "a.b.c.d", "b.c"})},
		{key: "a.*", cases: exchangeKeys([]string{"a.b", "a."}, []string{"a", "a.b.c", "b.a"})},
		{key: "*", cases: exchangeKeys([]string{"a", "abc"}, []string{"", "a.b", "."})}, // "" has no words
		{key: "a.#", cases: exchangeKeys([]string{"a", "a.b", "a.b.c", "a."}, []string{"b.a", "ab", ""})},
		{key: "#", cases: exchangeKeys([]string{"", "a", "a.b.c", ".", ".."}, nil)},
		{key: "#.a", cases: exchangeKeys([]string{"a", "x.a", "x.y.a", ".a"}, []string{"a.x", "xa"})},
		{key: "a.#.b", cases: exchangeKeys([]string{"a.b", "a.x.b", "a.x.y.b", "a.b.b"}, []string{"a.x", "b.a.b", "a.b.c", "ab"})},
		{key: "a.*.#", cases: exchangeKeys([]string{"a.b", "a.b.c", "a.b.c.d"}, []string{"a", "b.c"})},
		{key: "#.#", cases: exchangeKeys([]string{"", "a", "a.b"}, nil)},
		{key: "*.*", cases: exchangeKeys([]string{"a.b", ".", "a."}, []string{"a", "a.b.c"})},
		{key: "a..b", cases: exchangeKeys([]string{"a..b"}, []string{"a.b", "a.x.b"})},
		{key: "", cases: exchangeKeys([]string{""}, []string{"a", "."})},
		{key: "#.*", cases: exchangeKeys([]string{"a", "a.b", "."}, nil)},
	})
}

// AMQP 0-9-1 §3.1.3.4: a headers exchange matches the message's header table against the
// binding arguments: x-match "all" (the default) needs every argument to match, "any" needs one.
// Arguments starting with "x-" take no part in matching; the routing key is ignored.
func TestExchangeHeaders_MatchAllAndAny(t *testing.T) {
	t.Parallel()
	ab := amqp.Table{"a": "1", "b": "2"}
	exchangeCheckRouting(t, "headers", []exchangeBindingCases{
		{args: amqp.Table{"x-match": "all", "a": "1", "b": "2"}, cases: exchangeHeaders(
			[]amqp.Table{ab, {"a": "1", "b": "2", "c": "3"}},
			[]amqp.Table{{"a": "1"}, {"a": "1", "b": "3"}, {}, nil, {"A": "1", "B": "2"}})},
		{args: amqp.Table{"a": "1", "b": "2"}, cases: exchangeHeaders( // default x-match is all
			[]amqp.Table{ab},
			[]amqp.Table{{"b": "2"}, nil})},
		{args: amqp.Table{"x-match": "any", "a": "1", "b": "2"}, cases: exchangeHeaders(
			[]amqp.Table{ab, {"a": "1"}, {"b": "2", "c": "3"}, {"a": "9", "b": "2"}},
			[]amqp.Table{{"a": "2"}, {"c": "1"}, {}, nil})},
		{args: amqp.Table{"x-match": "all", "x-extra": "e", "a": "1"}, cases: exchangeHeaders(
			[]amqp.Table{{"a": "1"}, {"a": "1", "x-extra": "other"}},
			[]amqp.Table{{"x-extra": "e"}})},
		{args: amqp.Table{"x-match": "any", "x-extra": "e", "a": "1"}, cases: exchangeHeaders(
			[]amqp.Table{{"a": "1"}},
			[]amqp.Table{{"x-extra": "e"}, {"x-extra": "e", "a": "2"}})},
		{args: amqp.Table{"x-match": "all"}, cases: exchangeHeaders( // no arguments: all matches everything
			[]amqp.Table{{}, nil, {"a": "1"}}, nil)},
		{args: amqp.Table{"x-match": "any"}, cases: exchangeHeaders( // no arguments: any matches nothing
			nil, []amqp.Table{{}, {"a": "1"}})},
	})
}

// RabbitMQ compares header values by value and type class: integers of different widths are
// equal when their values are, a longstr equals a byte array with the same octets, but a string
// never equals a number and a bool only an equal bool.
func TestExchangeHeaders_ValueTypes(t *testing.T) {
	t.Parallel()
	exchangeCheckRouting(t, "headers", []exchangeBindingCases{
		{args: amqp.Table{"n": int32(7)}, cases: exchangeHeaders(
			[]amqp.Table{{"n": int32(7)}, {"n": int64(7)}, {"n": int16(7)}},
			[]amqp.Table{{"n": "7"}, {"n": int32(8)}})},
		{args: amqp.Table{"s": "7"}, cases: exchangeHeaders(
			[]amqp.Table{{"s": "7"}, {"s": []byte("7")}},
			[]amqp.Table{{"s": int32(7)}, {"s": "77"}})},
		{args: amqp.Table{"b": true}, cases: exchangeHeaders(
			[]amqp.Table{{"b": true}},
			[]amqp.Table{{"b": false}, {"b": "true"}})},
	})
}

// RabbitMQ 3.10 adds x-match "all-with-x" and "any-with-x": like all/any, but message headers and
// binding arguments starting with "x-" (other than x-match) take part in matching.
func TestExchangeHeaders_MatchWithX(t *testing.T) {
	t.Parallel()
	exchangeCheckRouting(t, "headers", []exchangeBindingCases{
		{args: amqp.Table{"x-match": "all-with-x", "x-extra": "e", "a": "1"}, cases: exchangeHeaders(
			[]amqp.Table{{"a": "1", "x-extra": "e"}},
			[]amqp.Table{{"a": "1"}, {"x-extra": "e"}, {"a": "1", "x-extra": "other"}})},
		{args: amqp.Table{"x-match": "any-with-x", "x-extra": "e", "a": "1"}, cases: exchangeHeaders(
			[]amqp.Table{{"x-extra": "e"}, {"a": "1"}, {"x-extra": "e", "a": "2"}},
			[]amqp.Table{{"x-extra": "other"}, {"a": "2"}, {}})},
	})
}

// RabbitMQ rejects an x-match value other than all, any, all-with-x and any-with-x with 406
// PRECONDITION_FAILED on queue.bind.
func TestExchangeHeaders_InvalidXMatchIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	amqpErr(t, ch.QueueBind(q.Name, "", "amq.headers", false, amqp.Table{"x-match": "some"}), 406)
}

// AMQP 0-9-1 §3.1.3.1: every vhost has a nameless direct exchange to which every queue is bound
// by its own name.
func TestExchangeDefault_RoutesByQueueName(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q, err := ch.QueueDeclare(uniqueName(t), false, false, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	defer ch.QueueDelete(q.Name, false, false, false)
	for _, key := range []string{q.Name + "x", "", q.Name} {
		publishSync(t, ch, "", key, false, amqp.Publishing{Body: []byte(key)})
	}
	m := publishGetOne(t, ch, q.Name)
	if string(m.Body) != q.Name || m.Exchange != "" || m.RoutingKey != q.Name {
		t.Fatalf("got body %q exchange %q key %q, want only the message keyed by the queue name",
			m.Body, m.Exchange, m.RoutingKey)
	}
	publishEmpty(t, ch, q.Name)
}

// AMQP 0-9-1 §3.1.3.1: "The default exchange MUST NOT be bound to, deleted or redeclared by
// clients". RabbitMQ answers every operation naming it with 403 ACCESS_REFUSED (channel error),
// including a passive declare.
func TestExchangeDefault_CannotBeBoundDeclaredOrDeleted(t *testing.T) {
	t.Parallel()
	c := dial(t)
	setup := openChannel(t, c)
	q, err := setup.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	ops := map[string]func(ch *amqp.Channel) error{
		"queue.bind":       func(ch *amqp.Channel) error { return ch.QueueBind(q.Name, "k", "", false, nil) },
		"queue.unbind":     func(ch *amqp.Channel) error { return ch.QueueUnbind(q.Name, q.Name, "", nil) },
		"exchange.bind-to": func(ch *amqp.Channel) error { return ch.ExchangeBind("", "k", "amq.direct", false, nil) },
		"exchange.bind-from": func(ch *amqp.Channel) error {
			return ch.ExchangeBind("amq.direct", "k", "", false, nil)
		},
		"exchange.declare": func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare("", "direct", true, false, false, false, nil)
		},
		"exchange.declare-passive": func(ch *amqp.Channel) error {
			return ch.ExchangeDeclarePassive("", "direct", true, false, false, false, nil)
		},
		"exchange.delete": func(ch *amqp.Channel) error { return ch.ExchangeDelete("", false, false) },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			amqpErr(t, op(openChannel(t, c)), 403)
		})
	}
}

// RabbitMQ predeclares amq.direct, amq.fanout, amq.topic, amq.headers and amq.match (AMQP 0-9-1
// §3.1.3 "standard exchanges"); a passive declare finds each.
func TestExchange_StandardExchangesExist(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	for name, kind := range map[string]string{"amq.direct": "direct", "amq.fanout": "fanout",
		"amq.topic": "topic", "amq.headers": "headers", "amq.match": "headers"} {
		if err := ch.ExchangeDeclarePassive(name, kind, true, false, false, false, nil); err != nil {
			t.Fatalf("passive exchange.declare %s: %v", name, err)
		}
	}
	// A redeclare with identical properties is allowed even for a reserved name.
	if err := ch.ExchangeDeclare("amq.direct", "direct", true, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare amq.direct with its own properties: %v", err)
	}
}

// AMQP 0-9-1 §1.6.2.1 exchange.declare: "Exchange names starting with "amq." are reserved for
// pre-declared and standardised exchanges" — declaring a new one is 403 ACCESS_REFUSED. The
// prefix check is case-sensitive. Deleting a standard exchange is also 403.
func TestExchange_ReservedAmqPrefixIsAccessRefused(t *testing.T) {
	t.Parallel()
	c := dial(t)
	amqpErr(t, openChannel(t, c).ExchangeDeclare("amq."+uniqueName(t), "direct", false, true, false, false, nil), 403)
	amqpErr(t, openChannel(t, c).ExchangeDelete("amq.direct", false, false), 403)

	ch := openChannel(t, c)
	upper := "AMQ." + uniqueName(t)
	if err := ch.ExchangeDeclare(upper, "direct", false, true, false, false, nil); err != nil {
		t.Fatalf("exchange.declare %s: %v", upper, err)
	}
	if err := ch.ExchangeDelete(upper, false, false); err != nil {
		t.Fatalf("exchange.delete %s: %v", upper, err)
	}
}

// AMQP 0-9-1 §1.6.2.1: redeclaring an exchange with a different type, durable, auto-delete or
// internal flag is 406 PRECONDITION_FAILED (RabbitMQ also compares alternate-exchange).
func TestExchange_RedeclareWithDifferentPropertiesIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	type props struct {
		kind                       string
		durable, autoDel, internal bool
		args                       amqp.Table
	}
	base := props{kind: "direct"}
	for name, p := range map[string]props{
		"type":        {kind: "fanout"},
		"durable":     {kind: "direct", durable: true},
		"auto-delete": {kind: "direct", autoDel: true},
		"internal":    {kind: "direct", internal: true},
		"alternate":   {kind: "direct", args: amqp.Table{"alternate-exchange": "amq.fanout"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ch := openChannel(t, c)
			ex := uniqueName(t)
			if err := ch.ExchangeDeclare(ex, base.kind, base.durable, base.autoDel, base.internal, false, nil); err != nil {
				t.Fatalf("exchange.declare: %v", err)
			}
			defer func() { openChannel(t, c).ExchangeDelete(ex, false, false) }()
			if err := ch.ExchangeDeclare(ex, base.kind, base.durable, base.autoDel, base.internal, false, nil); err != nil {
				t.Fatalf("equal redeclare: %v", err)
			}
			amqpErr(t, ch.ExchangeDeclare(ex, p.kind, p.durable, p.autoDel, p.internal, false, p.args), 406)
		})
	}
}

// AMQP 0-9-1 §1.6.2.1 passive: "If set, the server will reply with Declare-Ok if the exchange
// already exists with the same name, and raise an error if not" — 404 NOT_FOUND. The passive
// declare does not compare the type.
func TestExchange_PassiveDeclare(t *testing.T) {
	t.Parallel()
	c := dial(t)
	amqpErr(t, openChannel(t, c).ExchangeDeclarePassive(uniqueName(t), "direct", false, false, false, false, nil), 404)
	if err := openChannel(t, c).ExchangeDeclarePassive("amq.direct", "fanout", true, false, false, false, nil); err != nil {
		t.Fatalf("passive declare of amq.direct naming another type: %v", err)
	}
}

// AMQP 0-9-1 §1.6.2.3 exchange.delete if-unused: "If set, the server will only delete the exchange
// if it has no queue bindings" — else 406 PRECONDITION_FAILED. RabbitMQ counts bindings where the
// exchange is the source (queue or exchange destinations), not where it is a destination.
func TestExchange_DeleteIfUnused(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	src, dst := uniqueName(t, "src"), uniqueName(t, "dst")
	for _, ex := range []string{src, dst} {
		if err := ch.ExchangeDeclare(ex, "direct", false, false, false, false, nil); err != nil {
			t.Fatalf("exchange.declare: %v", err)
		}
		defer func() { openChannel(t, c).ExchangeDelete(ex, false, false) }()
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	if err := ch.QueueBind(q.Name, "k", src, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	amqpErr(t, ch.ExchangeDelete(src, true, false), 406)

	ch = openChannel(t, c)
	if err := ch.QueueUnbind(q.Name, "k", src, nil); err != nil {
		t.Fatalf("queue.unbind: %v", err)
	}
	if err := ch.ExchangeBind(dst, "k", src, false, nil); err != nil {
		t.Fatalf("exchange.bind: %v", err)
	}
	amqpErr(t, ch.ExchangeDelete(src, true, false), 406)

	ch = openChannel(t, c)
	if err := ch.ExchangeDelete(dst, true, false); err != nil {
		t.Fatalf("if-unused delete of an exchange that is only a binding destination: %v", err)
	}
	if err := ch.ExchangeDelete(src, true, false); err != nil {
		t.Fatalf("if-unused delete after its bindings went: %v", err)
	}
	amqpErr(t, ch.ExchangeDeclarePassive(src, "direct", false, false, false, false, nil), 404)
}

// RabbitMQ makes exchange.delete idempotent: deleting an exchange that does not exist answers
// delete-ok (since 3.x, unlike the 0-9-1 text's 404).
func TestExchange_DeleteMissingIsOk(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	if err := ch.ExchangeDelete(uniqueName(t), false, false); err != nil {
		t.Fatalf("exchange.delete of a missing exchange: %v", err)
	}
	if err := ch.ExchangeDelete(uniqueName(t), true, false); err != nil {
		t.Fatalf("exchange.delete if-unused of a missing exchange: %v", err)
	}
}

// Deleting an exchange removes its bindings: messages published to an exchange of the same
// name declared afterwards do not reach the queue that was bound before.
func TestExchange_DeleteRemovesBindings(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	ex := uniqueName(t)
	if err := ch.ExchangeDeclare(ex, "fanout", false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare: %v", err)
	}
	defer ch.ExchangeDelete(ex, false, false)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	if err := ch.QueueBind(q.Name, "", ex, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	if err := ch.ExchangeDelete(ex, false, false); err != nil {
		t.Fatalf("exchange.delete: %v", err)
	}
	if err := ch.ExchangeDeclare(ex, "fanout", false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare again: %v", err)
	}
	publishSync(t, ch, ex, "", false, amqp.Publishing{Body: []byte("x")})
	qi, err := ch.QueueDeclarePassive(q.Name, false, true, true, false, nil)
	if err != nil {
		t.Fatalf("passive queue.declare: %v", err)
	}
	if qi.Messages != 0 {
		t.Fatalf("queue holds %d messages through a binding of a deleted exchange", qi.Messages)
	}
}

// RabbitMQ: an auto-delete exchange is deleted when its last binding (as source) is removed, and
// not before it ever had one.
func TestExchange_AutoDeleteAfterLastUnbind(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	ex := uniqueName(t)
	if err := ch.ExchangeDeclare(ex, "direct", false, true, false, false, nil); err != nil {
		t.Fatalf("exchange.declare: %v", err)
	}
	defer func() { openChannel(t, c).ExchangeDelete(ex, false, false) }()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	if err := ch.ExchangeDeclarePassive(ex, "direct", false, true, false, false, nil); err != nil {
		t.Fatalf("auto-delete exchange gone before any binding: %v", err)
	}
	for _, k := range []string{"a", "b"} {
		if err := ch.QueueBind(q.Name, k, ex, false, nil); err != nil {
			t.Fatalf("queue.bind: %v", err)
		}
	}
	if err := ch.QueueUnbind(q.Name, "a", ex, nil); err != nil {
		t.Fatalf("queue.unbind: %v", err)
	}
	if err := ch.ExchangeDeclarePassive(ex, "direct", false, true, false, false, nil); err != nil {
		t.Fatalf("auto-delete exchange gone while a binding remains: %v", err)
	}
	if err := ch.QueueUnbind(q.Name, "b", ex, nil); err != nil {
		t.Fatalf("queue.unbind: %v", err)
	}
	amqpErr(t, ch.ExchangeDeclarePassive(ex, "direct", false, true, false, false, nil), 404)
}

// RabbitMQ internal exchanges (exchange.declare internal=true): clients cannot publish to them
// (403 ACCESS_REFUSED channel error) but they receive messages through exchange-to-exchange
// bindings.
func TestExchange_InternalOnlyViaExchangeBinding(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	internal, front := uniqueName(t, "internal"), uniqueName(t, "front")
	if err := ch.ExchangeDeclare(internal, "fanout", false, false, true, false, nil); err != nil {
		t.Fatalf("exchange.declare internal: %v", err)
	}
	defer func() { openChannel(t, c).ExchangeDelete(internal, false, false) }()
	if err := ch.ExchangeDeclare(front, "fanout", false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare: %v", err)
	}
	defer func() { openChannel(t, c).ExchangeDelete(front, false, false) }()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	if err := ch.QueueBind(q.Name, "", internal, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	if err := ch.ExchangeBind(internal, "", front, false, nil); err != nil {
		t.Fatalf("exchange.bind: %v", err)
	}
	publishSync(t, ch, front, "", false, amqp.Publishing{Body: []byte("via-front")})
	if m := publishGetOne(t, ch, q.Name); string(m.Body) != "via-front" {
		t.Fatalf("got %q", m.Body)
	}

	pub := openChannel(t, c)
	closed := pub.NotifyClose(make(chan *amqp.Error, 1))
	if err := pub.PublishWithContext(ctx(t), internal, "", false, false, amqp.Publishing{Body: []byte("direct")}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if e := waitClose(t, closed); e == nil || e.Code != 403 {
		t.Fatalf("publish to an internal exchange: channel closed with %v, want 403", e)
	}
}

// RabbitMQ exchange.bind / exchange.unbind (https://www.rabbitmq.com/e2e.html): a binding from a
// source exchange to a destination exchange routes with the source's rules; messages then follow
// the destination's bindings. Unbinding stops the flow. A message reaching a queue by two paths
// is delivered once.
func TestExchange_ExchangeToExchangeBinding(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	src, dst := uniqueName(t, "src"), uniqueName(t, "dst")
	if err := ch.ExchangeDeclare(src, "topic", false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare: %v", err)
	}
	defer func() { openChannel(t, c).ExchangeDelete(src, false, false) }()
	if err := ch.ExchangeDeclare(dst, "direct", false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare: %v", err)
	}
	defer func() { openChannel(t, c).ExchangeDelete(dst, false, false) }()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	if err := ch.QueueBind(q.Name, "a.x", dst, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	if err := ch.ExchangeBind(dst, "a.*", src, false, nil); err != nil {
		t.Fatalf("exchange.bind: %v", err)
	}
	for _, k := range []string{"a.y", "b.x", "a.x"} { // src passes a.y and a.x, dst keeps a.x
		publishSync(t, ch, src, k, false, amqp.Publishing{Body: []byte(k)})
	}
	m := publishGetOne(t, ch, q.Name)
	if string(m.Body) != "a.x" || m.Exchange != src || m.RoutingKey != "a.x" {
		t.Fatalf("got body %q exchange %q key %q, want a.x published to %s", m.Body, m.Exchange, m.RoutingKey, src)
	}
	publishEmpty(t, ch, q.Name)

	// A second path to the same queue does not duplicate the message.
	if err := ch.QueueBind(q.Name, "a.x", src, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	publishSync(t, ch, src, "a.x", false, amqp.Publishing{Body: []byte("twice")})
	publishGetOne(t, ch, q.Name)
	if err := ch.QueueUnbind(q.Name, "a.x", src, nil); err != nil {
		t.Fatalf("queue.unbind: %v", err)
	}
	if qi, err := ch.QueueDeclarePassive(q.Name, false, true, true, false, nil); err != nil || qi.Messages != 0 {
		t.Fatalf("after two routes to one queue: %d messages left (err %v), want 0", qi.Messages, err)
	}

	if err := ch.ExchangeUnbind(dst, "a.*", src, false, nil); err != nil {
		t.Fatalf("exchange.unbind: %v", err)
	}
	publishSync(t, ch, src, "a.x", false, amqp.Publishing{Body: []byte("after-unbind")})
	if qi, err := ch.QueueDeclarePassive(q.Name, false, true, true, false, nil); err != nil || qi.Messages != 0 {
		t.Fatalf("after exchange.unbind: %d messages (err %v), want 0", qi.Messages, err)
	}
}

// RabbitMQ: exchange.bind naming a missing exchange is 404 NOT_FOUND; exchange.unbind of a binding
// that does not exist answers unbind-ok.
func TestExchange_BindMissingExchangeIsNotFound(t *testing.T) {
	t.Parallel()
	c := dial(t)
	amqpErr(t, openChannel(t, c).ExchangeBind("amq.direct", "k", uniqueName(t), false, nil), 404)
	amqpErr(t, openChannel(t, c).ExchangeBind(uniqueName(t), "k", "amq.direct", false, nil), 404)
	if err := openChannel(t, c).ExchangeUnbind("amq.direct", uniqueName(t), "amq.fanout", false, nil); err != nil {
		t.Fatalf("exchange.unbind of a missing binding: %v", err)
	}
}

// RabbitMQ alternate exchanges (https://www.rabbitmq.com/ae.html): a message the exchange cannot
// route goes to its alternate-exchange instead; a mandatory message routed by the AE is not
// returned. Routable messages do not go to the AE.
func TestExchange_AlternateExchangeGetsUnroutable(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	main, ae := uniqueName(t, "main"), uniqueName(t, "ae")
	if err := ch.ExchangeDeclare(ae, "fanout", false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare ae: %v", err)
	}
	defer func() { openChannel(t, c).ExchangeDelete(ae, false, false) }()
	if err := ch.ExchangeDeclare(main, "direct", false, false, false, false, amqp.Table{"alternate-exchange": ae}); err != nil {
		t.Fatalf("exchange.declare with alternate-exchange: %v", err)
	}
	defer func() { openChannel(t, c).ExchangeDelete(main, false, false) }()
	routed, unroutable := exchangeTempQueue(t, ch), exchangeTempQueue(t, ch)
	if err := ch.QueueBind(routed, "known", main, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	if err := ch.QueueBind(unroutable, "", ae, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 2))
	for _, k := range []string{"known", "unknown"} {
		publishSync(t, ch, main, k, true, amqp.Publishing{Body: []byte(k)})
	}
	if m := publishGetOne(t, ch, routed); string(m.Body) != "known" {
		t.Fatalf("routed queue got %q", m.Body)
	}
	m := publishGetOne(t, ch, unroutable)
	if string(m.Body) != "unknown" || m.Exchange != main || m.RoutingKey != "unknown" {
		t.Fatalf("alternate queue got body %q exchange %q key %q", m.Body, m.Exchange, m.RoutingKey)
	}
	for _, q := range []string{routed, unroutable} {
		publishEmpty(t, ch, q)
	}
	select {
	case r := <-returns:
		t.Fatalf("basic.return %d for a message the alternate exchange routed", r.ReplyCode)
	case <-time.After(50 * time.Millisecond):
	}
}

// exchangeTempQueue declares a server-named exclusive auto-delete queue.
func exchangeTempQueue(t testing.TB, ch *amqp.Channel) string {
	t.Helper()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	return q.Name
}

// RabbitMQ validates the alternate-exchange argument: it must be a string (406
// PRECONDITION_FAILED otherwise).
func TestExchange_AlternateExchangeMustBeString(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ex := uniqueName(t)
	defer func() { openChannel(t, c).ExchangeDelete(ex, false, false) }()
	amqpErr(t, openChannel(t, c).ExchangeDeclare(ex, "direct", false, true, false, false, amqp.Table{"alternate-exchange": int32(5)}), 406)
}

// AMQP 0-9-1 §1.6.2.1 exchange.declare type: "If the exchange type is not supported, the server
// MUST raise a connection exception 503 (command invalid)". RabbitMQ does so also for "".
func TestExchange_UnknownTypeIsCommandInvalid(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"no-such-type", "", "x-consistent-hash-not-loaded"} {
		t.Run(fmt.Sprintf("type=%q", kind), func(t *testing.T) {
			t.Parallel()
			c := dial(t)
			closed := c.NotifyClose(make(chan *amqp.Error, 1))
			ch := openChannel(t, c)
			amqpErr(t, ch.ExchangeDeclare(uniqueName(t), kind, false, true, false, false, nil), 503)
			if e := waitClose(t, closed); e == nil || e.Code != 503 {
				t.Fatalf("connection closed with %v, want 503", e)
			}
		})
	}
}

// AMQP 0-9-1 §1.8.3.7 basic.publish: "If the exchange does not exist the server will raise a
// channel exception with reply code 404 (not found)"; the connection stays open.
func TestExchange_PublishToMissingExchangeIsNotFound(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.PublishWithContext(ctx(t), uniqueName(t), "k", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	e := waitClose(t, closed)
	if e == nil || e.Code != 404 {
		t.Fatalf("channel closed with %v, want 404", e)
	}
	if c.IsClosed() {
		t.Fatal("connection closed by a channel error")
	}
	if _, err := c.Channel(); err != nil {
		t.Fatalf("channel.open after the channel error: %v", err)
	}
}
