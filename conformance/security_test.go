package conformance

// Access control and multi-tenancy (RabbitMQ's access-control guide; AMQP 0-9-1 spec 1.4.2.7
// connection.open, reply codes 403 ACCESS_REFUSED, 530 NOT_ALLOWED).

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestSecurity_TenantsCannotReachEachOther: two tenants, each with full permissions in its
// own vhost only. Neither can open the other's vhost, see its queues, publish into them or
// consume from them; names do not collide across vhosts.
func TestSecurity_TenantsCannotReachEachOther(t *testing.T) {
	tn := &tenancy{}
	alice, bob := secName(t, "alice"), secName(t, "bob")
	va, vb := "/"+secName(t, "tenant-a"), "/"+secName(t, "tenant-b")
	tn.user(alice, "pa", nil)
	tn.user(bob, "pb", nil)
	tn.vhost(va, nil)
	tn.vhost(vb, nil)
	tn.perm(alice, va, ".*", ".*", ".*")
	tn.perm(bob, vb, ".*", ".*", ".*")
	b := setupTenancy(t, tn)

	// Each tenant is refused the other's vhost at connection.open.
	wantErrText(t, dialErr(t, b.url(bob, "pb", va)), 530,
		fmt.Sprintf("NOT_ALLOWED - access to vhost '%s' refused for user '%s'", va, bob))
	wantErrText(t, dialErr(t, b.url(alice, "pa", vb)), 530,
		fmt.Sprintf("NOT_ALLOWED - access to vhost '%s' refused for user '%s'", vb, alice))

	ca := dialURL(t, b.url(alice, "pa", va))
	cb := dialURL(t, b.url(bob, "pb", vb))
	cha, chb := openChannel(t, ca), openChannel(t, cb)
	if _, err := cha.QueueDeclare("orders", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := cha.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := cha.PublishWithDeferredConfirmWithContext(ctx(t), "", "orders", false, false, amqp.Publishing{Body: []byte("alice's")})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctx(t)); !ok || err != nil {
		t.Fatalf("confirm: %v %v", ok, err)
	}

	// Bob cannot see alice's queue...
	amqpErr(t, chanErr(t, cb, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive("orders", false, false, false, false, nil)
		return err
	}), 404)
	// ...nor consume from it or get from it...
	amqpErr(t, chanErr(t, cb, func(ch *amqp.Channel) error {
		_, err := ch.Consume("orders", "", false, false, false, false, nil)
		return err
	}), 404)
	amqpErr(t, chanErr(t, cb, func(ch *amqp.Channel) error {
		_, _, err := ch.Get("orders", false)
		return err
	}), 404)
	// ...and his publish with the same routing key stays in his vhost (mandatory: returned).
	returns := chb.NotifyReturn(make(chan amqp.Return, 1))
	if err := chb.PublishWithContext(ctx(t), "", "orders", true, false, amqp.Publishing{Body: []byte("bob's")}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-returns:
		if r.ReplyCode != 312 {
			t.Fatalf("return code %d", r.ReplyCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("bob's mandatory publish to 'orders' was routed: it reached another vhost")
	}
	// Bob's own "orders" is a different queue.
	q, err := chb.QueueDeclare("orders", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 0 {
		t.Fatalf("bob's new 'orders' holds %d messages", q.Messages)
	}
	// Alice's queue holds exactly her message.
	m, ok, err := cha.Get("orders", true)
	if err != nil || !ok || string(m.Body) != "alice's" {
		t.Fatalf("alice's get: %q %v %v", m.Body, ok, err)
	}
	if _, ok, _ := cha.Get("orders", true); ok {
		t.Fatal("alice's queue holds a second message")
	}
}

// TestSecurity_NoPermissionsMeansNoVHost: a user without a permission entry for a vhost is
// refused at connection.open with 530 (RabbitMQ checks access before anything else runs); a
// missing vhost is 530 too.
func TestSecurity_NoPermissionsMeansNoVHost(t *testing.T) {
	tn := &tenancy{}
	u, v := secName(t, "nobody"), "/"+secName(t, "closed")
	tn.user(u, "pw", nil)
	tn.vhost(v, nil)
	b := setupTenancy(t, tn)
	wantErrText(t, dialErr(t, b.url(u, "pw", v)), 530,
		fmt.Sprintf("NOT_ALLOWED - access to vhost '%s' refused for user '%s'", v, u))
	wantErrText(t, dialErr(t, b.url(u, "pw", "/")), 530,
		fmt.Sprintf("NOT_ALLOWED - access to vhost '/' refused for user '%s'", u))
	missing := secName(t, "missing")
	wantErrText(t, dialErr(t, b.url(u, "pw", missing)), 530,
		fmt.Sprintf("NOT_ALLOWED - vhost %s not found", missing))
	// Wrong password: 403 (amqp091-go reports it as ErrCredentials).
	amqpErr(t, dialErr(t, b.url(u, "wrong", v)), 403)
}

// TestSecurity_ConfigureWriteReadPermissions checks each operation against RabbitMQ's
// permission table: declare/delete need configure, publish and binding to a queue need write
// on the destination, consume/get/purge and binding from an exchange need read.
func TestSecurity_ConfigureWriteReadPermissions(t *testing.T) {
	tn := &tenancy{}
	u, v := secName(t, "limited"), "/"+secName(t, "perm")
	tn.user(u, "pw", nil)
	tn.vhost(v, nil)
	tn.perm(u, v, `^cfg\.`, `^w\.|^cfg\.|^amq\.default$`, `^r\.|^cfg\.|^amq\.direct$`)
	b := setupTenancy(t, tn)
	c := dialURL(t, b.url(u, "pw", v))
	refused := func(kind, name string) string {
		return fmt.Sprintf("ACCESS_REFUSED - access to %s '%s' in vhost '%s' refused for user '%s'", kind, name, v, u)
	}
	ok := func(what string, f func(ch *amqp.Channel) error) {
		t.Helper()
		if err := chanErr(t, c, f); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	deny := func(text string, f func(ch *amqp.Channel) error) {
		t.Helper()
		wantErrText(t, chanErr(t, c, f), 403, text)
	}
	ok("declare cfg.q", func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("cfg.q", false, false, false, false, nil)
		return err
	})
	deny(refused("queue", "other"), func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("other", false, false, false, false, nil)
		return err
	})
	// Passive declare needs no permission: missing is 404, not 403.
	amqpErr(t, chanErr(t, c, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive("other", false, false, false, false, nil)
		return err
	}), 404)
	// A server-named queue is checked under its generated name, which ^cfg\. does not match.
	e := amqpErr(t, chanErr(t, c, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("", false, false, true, false, nil)
		return err
	}), 403)
	if want := "ACCESS_REFUSED - access to queue 'amq.gen-"; len(e.Reason) < len(want) || e.Reason[:len(want)] != want {
		t.Fatalf("server-named: %q", e.Reason)
	}
	deny(refused("exchange", "x.e"), func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare("x.e", "direct", false, true, false, false, nil)
	})
	// The default exchange is "amq.default" for permissions.
	ok("publish via the default exchange", func(ch *amqp.Channel) error {
		return ch.PublishWithContext(ctx(t), "", "cfg.q", false, false, amqp.Publishing{})
	})
	deny(refused("exchange", "amq.fanout"), func(ch *amqp.Channel) error {
		return ch.PublishWithContext(ctx(t), "amq.fanout", "", false, false, amqp.Publishing{})
	})
	// Write is checked before existence.
	deny(refused("exchange", "nope"), func(ch *amqp.Channel) error {
		return ch.PublishWithContext(ctx(t), "nope", "", false, false, amqp.Publishing{})
	})
	ok("bind cfg.q to amq.direct", func(ch *amqp.Channel) error { return ch.QueueBind("cfg.q", "k", "amq.direct", false, nil) })
	deny(refused("exchange", "amq.topic"), func(ch *amqp.Channel) error { return ch.QueueBind("cfg.q", "k", "amq.topic", false, nil) })
	ok("get cfg.q", func(ch *amqp.Channel) error { _, _, err := ch.Get("cfg.q", true); return err })
	ok("consume cfg.q", func(ch *amqp.Channel) error {
		_, err := ch.Consume("cfg.q", "", true, false, false, false, nil)
		return err
	})
	ok("purge cfg.q", func(ch *amqp.Channel) error { _, err := ch.QueuePurge("cfg.q", false); return err })
	// Deleting needs configure, checked before existence.
	deny(refused("queue", "missing"), func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete("missing", false, false, false)
		return err
	})
	ok("delete cfg.q", func(ch *amqp.Channel) error { _, err := ch.QueueDelete("cfg.q", false, false, false); return err })
}

// TestSecurity_ReadDeniedOnQueue: consume, get and purge need read on the queue.
func TestSecurity_ReadDeniedOnQueue(t *testing.T) {
	tn := &tenancy{}
	u, v := secName(t, "writer"), "/"+secName(t, "wo")
	tn.user(u, "pw", nil)
	tn.vhost(v, nil)
	tn.perm(u, v, ".*", ".*", "^$")
	b := setupTenancy(t, tn)
	c := dialURL(t, b.url(u, "pw", v))
	if err := chanErr(t, c, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("jobs", false, false, false, false, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("ACCESS_REFUSED - access to queue 'jobs' in vhost '%s' refused for user '%s'", v, u)
	for name, f := range map[string]func(ch *amqp.Channel) error{
		"consume": func(ch *amqp.Channel) error {
			_, err := ch.Consume("jobs", "", false, false, false, false, nil)
			return err
		},
		"get":   func(ch *amqp.Channel) error { _, _, err := ch.Get("jobs", false); return err },
		"purge": func(ch *amqp.Channel) error { _, err := ch.QueuePurge("jobs", false); return err },
	} {
		t.Run(name, func(t *testing.T) { wantErrText(t, chanErr(t, c, f), 403, text) })
	}
}

// TestSecurity_TopicPermissions: on topic exchanges, publishes are checked against the
// topic write expression and bindings against the read one ({username} expanded); other
// exchange types ignore topic permissions.
func TestSecurity_TopicPermissions(t *testing.T) {
	tn := &tenancy{}
	u, v := secName(t, "topical"), "/"+secName(t, "topics")
	tn.user(u, "pw", nil)
	tn.vhost(v, nil)
	tn.perm(u, v, ".*", ".*", ".*")
	tn.topicPerm(u, v, "amq.topic", `^ok\.`, `^{username}\.`)
	tn.topicPerm(u, v, "amq.direct", `^nope$`, `^nope$`)
	b := setupTenancy(t, tn)
	c := dialURL(t, b.url(u, "pw", v))
	refused := func(key, x string) string {
		return fmt.Sprintf("ACCESS_REFUSED - access to topic '%s' in exchange '%s' in vhost '%s' refused for user '%s'", key, x, v, u)
	}
	if err := chanErr(t, c, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("tq", false, false, false, false, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := chanErr(t, c, func(ch *amqp.Channel) error {
		return ch.PublishWithContext(ctx(t), "amq.topic", "ok.1", false, false, amqp.Publishing{})
	}); err != nil {
		t.Fatalf("allowed topic publish: %v", err)
	}
	wantErrText(t, chanErr(t, c, func(ch *amqp.Channel) error {
		return ch.PublishWithContext(ctx(t), "amq.topic", "bad.1", false, false, amqp.Publishing{})
	}), 403, refused("bad.1", "amq.topic"))
	if err := chanErr(t, c, func(ch *amqp.Channel) error { return ch.QueueBind("tq", u+".#", "amq.topic", false, nil) }); err != nil {
		t.Fatalf("allowed topic bind: %v", err)
	}
	wantErrText(t, chanErr(t, c, func(ch *amqp.Channel) error { return ch.QueueBind("tq", "other.#", "amq.topic", false, nil) }),
		403, refused("other.#", "amq.topic"))
	wantErrText(t, chanErr(t, c, func(ch *amqp.Channel) error { return ch.QueueUnbind("tq", "other.#", "amq.topic", nil) }),
		403, refused("other.#", "amq.topic"))
	// amq.direct is not a topic exchange: its topic permission is never consulted.
	if err := chanErr(t, c, func(ch *amqp.Channel) error {
		return ch.PublishWithContext(ctx(t), "amq.direct", "anything", false, false, amqp.Publishing{})
	}); err != nil {
		t.Fatalf("direct publish: %v", err)
	}
	if err := chanErr(t, c, func(ch *amqp.Channel) error { return ch.QueueBind("tq", "anything", "amq.direct", false, nil) }); err != nil {
		t.Fatalf("direct bind: %v", err)
	}
}

// TestLimits_VHostMaxConnections: at the vhost's max-connections, connection.open is refused
// with 530; a slot frees when a connection closes. 0 refuses every client.
func TestLimits_VHostMaxConnections(t *testing.T) {
	tn := &tenancy{}
	u, v, v0 := secName(t, "lim"), "/"+secName(t, "one-conn"), "/"+secName(t, "no-conn")
	tn.user(u, "pw", nil)
	tn.vhost(v, map[string]int{"max-connections": 1})
	tn.vhost(v0, map[string]int{"max-connections": 0})
	tn.perm(u, v, ".*", ".*", ".*")
	tn.perm(u, v0, ".*", ".*", ".*")
	b := setupTenancy(t, tn)
	first, err := amqp.Dial(b.url(u, "pw", v))
	if err != nil {
		t.Fatal(err)
	}
	wantErrText(t, dialErr(t, b.url(u, "pw", v)), 530,
		fmt.Sprintf("NOT_ALLOWED - access to vhost '%s' refused for user '%s': connection limit (1) is reached", v, u))
	first.Close()
	waitFor(t, func() bool { return dialErr(t, b.url(u, "pw", v)) == nil })
	wantErrText(t, dialErr(t, b.url(u, "pw", v0)), 530,
		fmt.Sprintf("NOT_ALLOWED - access to vhost '%s' refused for user '%s': connection limit (0) is reached", v0, u))
}

// TestLimits_UserMaxConnections: a user's max-connections counts across vhosts.
func TestLimits_UserMaxConnections(t *testing.T) {
	tn := &tenancy{}
	u, v1, v2 := secName(t, "oneconn"), "/"+secName(t, "ua"), "/"+secName(t, "ub")
	tn.user(u, "pw", map[string]int{"max-connections": 1})
	tn.vhost(v1, nil)
	tn.vhost(v2, nil)
	tn.perm(u, v1, ".*", ".*", ".*")
	tn.perm(u, v2, ".*", ".*", ".*")
	b := setupTenancy(t, tn)
	first := dialURL(t, b.url(u, "pw", v1))
	wantErrText(t, dialErr(t, b.url(u, "pw", v2)), 530,
		fmt.Sprintf("NOT_ALLOWED - connection refused for user '%s': user connection limit (1) is reached", u))
	first.Close()
	waitFor(t, func() bool { return dialErr(t, b.url(u, "pw", v2)) == nil })
}

// TestLimits_VHostMaxQueues: declaring a new queue at max-queues is 406; redeclaring an
// existing one is fine.
func TestLimits_VHostMaxQueues(t *testing.T) {
	tn := &tenancy{}
	u, v := secName(t, "mq"), "/"+secName(t, "two-queues")
	tn.user(u, "pw", nil)
	tn.vhost(v, map[string]int{"max-queues": 2})
	tn.perm(u, v, ".*", ".*", ".*")
	b := setupTenancy(t, tn)
	c := dialURL(t, b.url(u, "pw", v))
	for _, q := range []string{"q1", "q2", "q2"} {
		if err := chanErr(t, c, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(q, false, false, false, false, nil)
			return err
		}); err != nil {
			t.Fatalf("declare %s: %v", q, err)
		}
	}
	wantErrText(t, chanErr(t, c, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("q3", false, false, false, false, nil)
		return err
	}), 406, fmt.Sprintf("PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '%s' (2) is reached", v))
	// Deleting one frees a slot.
	if err := chanErr(t, c, func(ch *amqp.Channel) error { _, err := ch.QueueDelete("q1", false, false, false); return err }); err != nil {
		t.Fatal(err)
	}
	if err := chanErr(t, c, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("q3", false, false, false, false, nil)
		return err
	}); err != nil {
		t.Fatalf("declare after delete: %v", err)
	}
}

// TestLimits_HandshakeTimeout: a client that connects and sends nothing is disconnected after
// the handshake timeout (RabbitMQ's handshake_timeout, 10 s by default).
func TestLimits_HandshakeTimeout(t *testing.T) {
	addr, wait := amqpAddr, 15*time.Second
	if !againstRabbit {
		b := setupTenancy(t, &tenancy{}, "--handshake-timeout", "500ms")
		addr, wait = b.amqpAddr, 5*time.Second
	}
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	nc.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	for {
		if _, err := nc.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("a silent client was still connected after %v", wait)
			}
			break
		}
	}
	t.Logf("silent client closed after %v", time.Since(start).Round(time.Millisecond))
}

// TestSecurity_DeleteVHostClosesItsConnections: deleting a vhost closes its connections with
// 320 CONNECTION_FORCED "vhost '...' is deleted" (needs the management API).
func TestSecurity_DeleteVHostClosesItsConnections(t *testing.T) {
	tn := &tenancy{}
	v := "/" + secName(t, "doomed")
	tn.vhost(v, nil)
	tn.perm("guest", v, ".*", ".*", ".*")
	b := setupTenancy(t, tn)
	c := dialURL(t, b.url("guest", "guest", v))
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	code, body := mgmtCall(t, b, "DELETE", "/api/vhosts/"+url.PathEscape(v))
	if code == 404 || code == 405 {
		t.Skipf("no management API for vhost deletion (%d %s)", code, body)
	}
	if code/100 != 2 {
		t.Fatalf("DELETE vhost: %d %s", code, body)
	}
	e := waitClose(t, closed)
	// RabbitMQ races its vhost supervisor shutdown against the deletion and sometimes says
	// "is down" instead; Warren always says "is deleted".
	if e == nil || e.Code != 320 || (e.Reason != fmt.Sprintf("CONNECTION_FORCED - vhost '%s' is deleted", v) &&
		(!againstRabbit || e.Reason != fmt.Sprintf("CONNECTION_FORCED - vhost '%s' is down", v))) {
		t.Fatalf("close: %v", e)
	}
}

// waitFor polls cond for up to 5 s (a closed connection is released asynchronously).
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpAs calls the management API at addr as user with a JSON body ("" for none) and returns
// the status and body.
func httpAs(t testing.TB, addr, user, pass, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pass)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestHTTP_WritesApplyVHostPermissions: every HTTP write on a vhost's exchanges, queues and
// bindings applies the configure/write/read and topic permissions of the AMQP method it
// stands for, with the status codes (and texts) of RabbitMQ 3.10's management plugin, and a
// refused write changes nothing. Users: nc/nw/nr lack configure/write/read; np (management),
// mon (monitoring) and adm (administrator) have no permissions in the vhost at all; tp has
// full permissions and topic permissions on px (write ^a, read ^b).
func TestHTTP_WritesApplyVHostPermissions(t *testing.T) {
	tn := &tenancy{}
	v := secName(t, "perm-vh")
	tn.vhost(v, nil)
	tn.perm("guest", v, ".*", ".*", ".*")
	users := map[string]string{}
	add := func(role, tag string) {
		name := secName(t, "http-"+role)
		users[role] = name
		tn.user(name, "pw", nil)
		tn.Users[len(tn.Users)-1].Tags = []string{tag}
	}
	for _, r := range []string{"nc", "nw", "nr", "np", "tp"} {
		add(r, "management")
	}
	add("mon", "monitoring")
	add("adm", "administrator")
	tn.perm(users["nc"], v, "", ".*", ".*")
	tn.perm(users["nw"], v, ".*", "", ".*")
	tn.perm(users["nr"], v, ".*", ".*", "")
	tn.perm(users["tp"], v, ".*", ".*", ".*")
	tn.topicPerm(users["tp"], v, "px", "^a", "^b")
	b := setupTenancy(t, tn)
	if b.httpAddr == "" {
		t.Skip("no management API address")
	}
	vp := url.PathEscape(v)
	guest := func(method, path, body string) {
		t.Helper()
		if code, out := httpAs(t, b.httpAddr, "guest", "guest", method, path, body); code/100 != 2 && code != 404 {
			t.Fatalf("guest %s %s: %d %s", method, path, code, out)
		}
	}
	conn := dialURL(t, b.url("guest", "guest", v))
	// reset puts the fixture back: exchanges px (topic) and px2 (topic), queue pq with one
	// message, bindings px→pq and px→px2 with key k, and no newx/newq.
	reset := func() {
		t.Helper()
		guest("DELETE", "/api/exchanges/"+vp+"/newx", "")
		guest("DELETE", "/api/queues/"+vp+"/newq", "")
		guest("PUT", "/api/exchanges/"+vp+"/px", `{"type":"topic"}`)
		guest("PUT", "/api/exchanges/"+vp+"/px2", `{"type":"topic"}`)
		guest("PUT", "/api/queues/"+vp+"/pq", `{}`)
		for _, k := range []string{"k2", "b.k", "a.k"} {
			guest("DELETE", "/api/bindings/"+vp+"/e/px/q/pq/"+k, "")
			guest("DELETE", "/api/bindings/"+vp+"/e/px/e/px2/"+k, "")
		}
		guest("POST", "/api/bindings/"+vp+"/e/px/q/pq", `{"routing_key":"k"}`)
		guest("POST", "/api/bindings/"+vp+"/e/px/e/px2", `{"routing_key":"k"}`)
		guest("DELETE", "/api/queues/"+vp+"/pq/contents", "")
		guest("POST", "/api/exchanges/"+vp+"/amq.default/publish", `{"routing_key":"pq","payload":"m","payload_encoding":"string","properties":{}}`)
	}
	// snapshot is what the writes can change, read as guest (AMQP for the message count,
	// which RabbitMQ's API reports only after its next statistics tick).
	snapshot := func() string {
		t.Helper()
		var out strings.Builder
		for _, p := range []string{"/api/exchanges/" + vp + "/px", "/api/exchanges/" + vp + "/px2", "/api/exchanges/" + vp + "/newx",
			"/api/queues/" + vp + "/pq", "/api/queues/" + vp + "/newq"} {
			code, _ := httpAs(t, b.httpAddr, "guest", "guest", "GET", p, "")
			fmt.Fprintf(&out, "%s %d\n", p, code)
		}
		for _, p := range []string{"/api/bindings/" + vp + "/e/px/q/pq", "/api/bindings/" + vp + "/e/px/e/px2"} {
			_, body := httpAs(t, b.httpAddr, "guest", "guest", "GET", p, "")
			var bs []struct {
				Key string `json:"routing_key"`
			}
			json.Unmarshal([]byte(body), &bs)
			keys := []string{}
			for _, x := range bs {
				keys = append(keys, x.Key)
			}
			sort.Strings(keys)
			fmt.Fprintf(&out, "%s %v\n", p, keys)
		}
		ch := openChannel(t, conn)
		q, err := ch.QueueDeclarePassive("pq", false, false, false, false, nil)
		if err != nil {
			t.Fatalf("passive declare pq: %v", err)
		}
		ch.Close()
		fmt.Fprintf(&out, "pq messages %d\n", q.Messages)
		return out.String()
	}

	const (
		ok        = 0
		refused   = 401 // "Access refused."
		noVHost   = 402 // 401 "User not authorised to access virtual host"
		pubDenied = 400 // 400 "403 ACCESS_REFUSED - access to exchange ..."
		getDenied = 403 // 401 "ACCESS_REFUSED - access to queue ..."
	)
	pub := func(key string) string {
		return `{"routing_key":"` + key + `","payload":"x","payload_encoding":"string","properties":{}}`
	}
	type op struct {
		name, method, path, body string
		want                     map[string]int // by role; missing: ok
	}
	noAccess := map[string]int{"np": noVHost, "mon": noVHost, "adm": refused}
	with := func(m map[string]int) map[string]int {
		out := map[string]int{}
		for k, x := range noAccess {
			out[k] = x
		}
		for k, x := range m {
			out[k] = x
		}
		return out
	}
	ops := []op{
		{"declare exchange", "PUT", "/api/exchanges/" + vp + "/newx", `{"type":"direct"}`, with(map[string]int{"nc": refused})},
		{"delete exchange", "DELETE", "/api/exchanges/" + vp + "/px2", "", with(map[string]int{"nc": refused})},
		{"publish", "POST", "/api/exchanges/" + vp + "/px/publish", pub("a.k"), with(map[string]int{"nw": pubDenied})},
		{"publish refused by topic permission", "POST", "/api/exchanges/" + vp + "/px/publish", pub("k"), with(map[string]int{"nw": pubDenied, "tp": pubDenied})},
		{"declare queue", "PUT", "/api/queues/" + vp + "/newq", `{}`, with(map[string]int{"nc": refused})},
		{"delete queue", "DELETE", "/api/queues/" + vp + "/pq", "", with(map[string]int{"nc": refused})},
		{"purge", "DELETE", "/api/queues/" + vp + "/pq/contents", "", with(map[string]int{"nr": refused})},
		{"get", "POST", "/api/queues/" + vp + "/pq/get", `{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}`, with(map[string]int{"nr": getDenied})},
		{"bind queue", "POST", "/api/bindings/" + vp + "/e/px/q/pq", `{"routing_key":"b.k"}`, with(map[string]int{"nw": refused, "nr": refused})},
		{"bind queue refused by topic permission", "POST", "/api/bindings/" + vp + "/e/px/q/pq", `{"routing_key":"k2"}`, with(map[string]int{"nw": refused, "nr": refused, "tp": refused})},
		{"unbind queue", "DELETE", "/api/bindings/" + vp + "/e/px/q/pq/k", "", with(map[string]int{"nw": refused, "nr": refused, "tp": refused})},
		{"bind exchange", "POST", "/api/bindings/" + vp + "/e/px/e/px2", `{"routing_key":"b.k"}`, with(map[string]int{"nw": refused, "nr": refused})},
		{"unbind exchange", "DELETE", "/api/bindings/" + vp + "/e/px/e/px2/k", "", with(map[string]int{"nw": refused, "nr": refused, "tp": refused})},
	}
	roles := []string{"nc", "nw", "nr", "np", "mon", "adm", "tp"}
	for _, o := range ops {
		for _, role := range roles {
			user := users[role]
			reset()
			before := snapshot()
			code, body := httpAs(t, b.httpAddr, user, "pw", o.method, o.path, o.body)
			want := o.want[role]
			var wantCode int
			var wantReason string
			switch want {
			case ok:
			case refused:
				wantCode, wantReason = 401, "Access refused."
			case noVHost:
				wantCode, wantReason = 401, "User not authorised to access virtual host"
			case pubDenied:
				key := "a.k"
				if strings.Contains(o.body, `"k"`) {
					key = "k"
				}
				if role == "tp" {
					wantReason = fmt.Sprintf("403 ACCESS_REFUSED - access to topic '%s' in exchange 'px' in vhost '%s' refused for user '%s'", key, v, user)
				} else {
					wantReason = fmt.Sprintf("403 ACCESS_REFUSED - access to exchange 'px' in vhost '%s' refused for user '%s'", v, user)
				}
				wantCode = 400
			case getDenied:
				wantCode, wantReason = 401, fmt.Sprintf("ACCESS_REFUSED - access to queue 'pq' in vhost '%s' refused for user '%s'", v, user)
			}
			label := fmt.Sprintf("%s as %s: %s %s", o.name, role, o.method, o.path)
			if want == ok {
				if code/100 != 2 {
					t.Errorf("%s: %d %s, want 2xx", label, code, body)
				}
				continue
			}
			var e struct{ Reason string }
			json.Unmarshal([]byte(body), &e)
			if code != wantCode || e.Reason != wantReason {
				t.Errorf("%s:\n got  %d %q\n want %d %q", label, code, e.Reason, wantCode, wantReason)
			}
			if after := snapshot(); after != before {
				t.Errorf("%s was refused but changed the broker:\nbefore:\n%s\nafter:\n%s", label, before, after)
			}
		}
	}
}

// TestHTTP_CloseConnectionNeedsOwnerOrAdministrator: DELETE /api/connections/{name} closes a
// connection only for an administrator or the connection's own user; a monitoring user, who
// may see every connection, and a management user get 401 and the connection stays open.
func TestHTTP_CloseConnectionNeedsOwnerOrAdministrator(t *testing.T) {
	tn := &tenancy{}
	v := secName(t, "conn-vh")
	tn.vhost(v, nil)
	tn.perm("guest", v, ".*", ".*", ".*")
	mon, mgr := secName(t, "http-mon"), secName(t, "http-mgr")
	tn.user(mon, "pw", nil)
	tn.Users[len(tn.Users)-1].Tags = []string{"monitoring"}
	tn.user(mgr, "pw", nil)
	tn.Users[len(tn.Users)-1].Tags = []string{"management"}
	tn.perm(mgr, v, ".*", ".*", ".*")
	b := setupTenancy(t, tn)
	if b.httpAddr == "" {
		t.Skip("no management API address")
	}
	label := secName(t, "victim")
	conn, err := amqp.DialConfig(b.url("guest", "guest", v), amqp.Config{Properties: amqp.Table{"connection_name": label}, Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// RabbitMQ lists a connection after its next statistics tick (5 s).
	var name string
	deadline := time.Now().Add(20 * time.Second)
	for name == "" {
		_, body := httpAs(t, b.httpAddr, "guest", "guest", "GET", "/api/connections", "")
		var cs []struct {
			Name  string         `json:"name"`
			Props map[string]any `json:"client_properties"`
		}
		json.Unmarshal([]byte(body), &cs)
		for _, c := range cs {
			if c.Props["connection_name"] == label {
				name = c.Name
			}
		}
		if name == "" {
			if time.Now().After(deadline) {
				t.Fatal("the connection is not listed within 20s")
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	for _, u := range []string{mon, mgr} {
		code, body := httpAs(t, b.httpAddr, u, "pw", "DELETE", "/api/connections/"+url.PathEscape(name), "")
		var e struct{ Reason string }
		json.Unmarshal([]byte(body), &e)
		if code != 401 || e.Reason != "User not authorised to access object" {
			t.Errorf("DELETE guest's connection as %s: %d %q, want 401 \"User not authorised to access object\"", u, code, e.Reason)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if conn.IsClosed() {
		t.Fatal("the connection was closed by a user who does not own it")
	}
}

// TestHTTP_PublishStripsBCC: a message published through the HTTP API with a BCC header
// reaches the BCC queues, and no queue receives the header (sender-selected distribution, as
// an AMQP publish; the CC header stays).
func TestHTTP_PublishStripsBCC(t *testing.T) {
	if httpAddr == "" {
		t.Skip("no management API address")
	}
	_, ch := dialChannel(t)
	qa, qb, qc := uniqueName(t, "a"), uniqueName(t, "b"), uniqueName(t, "c")
	for _, q := range []string{qa, qb, qc} {
		if _, err := ch.QueueDeclare(q, false, true, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	body := fmt.Sprintf(`{"routing_key":%q,"payload":"hi","payload_encoding":"string","properties":{"headers":{"CC":[%q],"BCC":[%q]}}}`, qa, qb, qc)
	code, out := httpAs(t, httpAddr, "guest", "guest", "POST", "/api/exchanges/%2F/amq.default/publish", body)
	if code != 200 || !strings.Contains(out, `"routed":true`) {
		t.Fatalf("publish: %d %s", code, out)
	}
	for _, q := range []string{qa, qb, qc} {
		var m amqp.Delivery
		var ok bool
		var err error
		deadline := time.Now().Add(5 * time.Second)
		for !ok && err == nil && time.Now().Before(deadline) {
			if m, ok, err = ch.Get(q, true); !ok {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if err != nil || !ok {
			t.Fatalf("get %s: ok=%v err=%v", q, ok, err)
		}
		if _, has := m.Headers["BCC"]; has {
			t.Errorf("queue %s received the BCC header: %v", q, m.Headers)
		}
		if _, has := m.Headers["CC"]; !has {
			t.Errorf("queue %s: the CC header is gone: %v", q, m.Headers)
		}
	}
}

// TestHTTP_TextPlainDefinitionsImportIsRefused (issue 17): POST /api/definitions with
// Content-Type text/plain (what a cross-site HTML form sends), naming an administrator with a
// password the sender chose, is answered 415 and creates nobody; RabbitMQ answers the same.
func TestHTTP_TextPlainDefinitionsImportIsRefused(t *testing.T) {
	if httpAddr == "" {
		t.Skip("no management API address")
	}
	name := "mallory"
	if againstRabbit {
		name = secName(t, "mallory") // RabbitMQ is shared: never a fixed name there
		t.Cleanup(func() { rabbitAPI(t, "DELETE", "/api/users/"+url.PathEscape(name), nil) })
	}
	body := `{"users":[{"name":"` + name + `","password_hash":"` + rabbitHash("mallory") + `",` +
		`"hashing_algorithm":"rabbit_password_hashing_sha256","tags":"administrator"}],` +
		`"permissions":[{"user":"` + name + `","vhost":"/","configure":".*","write":".*","read":".*"}]}`
	req, _ := http.NewRequest("POST", "http://"+httpAddr+"/api/definitions", strings.NewReader(body))
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "text/plain")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain definitions import: %d, want 415", resp.StatusCode)
	}
	if code, _ := httpAs(t, httpAddr, "guest", "guest", "GET", "/api/users/"+url.PathEscape(name), ""); code != 404 {
		t.Errorf("GET /api/users/%s: %d, want 404", name, code)
	}
	if code, _ := httpAs(t, httpAddr, name, "mallory", "GET", "/api/users", ""); code != 401 {
		t.Errorf("%s signs in: %d, want 401", name, code)
	}
}
