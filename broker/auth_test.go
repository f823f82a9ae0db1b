package broker

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/session"
	"github.com/warrenmq/warren/broker/vhost"
)

var loopback = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
var remote = &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5000}

func newTestServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Hashes taken from RabbitMQ 3.10.8 (GET /api/users/guest and rabbitmqctl export_definitions).
func TestLoadDefinitions_RabbitMQHashAuthenticates(t *testing.T) {
	s := newTestServer(t)
	d, err := ReadDefinitions(strings.NewReader(`{
	  "users": [
	    {"name":"guest","password_hash":"DaW5A6aVprlXgUyUvs51uF9yST/yuLjiCnPFcp3d3KaSJ/Ed","hashing_algorithm":"rabbit_password_hashing_sha256","tags":["administrator"],"limits":{}},
	    {"name":"secu","password_hash":"ZfaHpf1CSIt9MyxendjEdmPU+Fzyd+JbWcSZYihTmkXlXRT2","hashing_algorithm":"rabbit_password_hashing_sha256","tags":"management,policymaker","limits":{"max-connections":1}}
	  ],
	  "vhosts": [{"name":"/sec1","limits":[["max-queues",1]],"metadata":{"description":"","tags":[]}}],
	  "permissions": [{"user":"secu","vhost":"/sec1","configure":"^cfg\\.","write":"^w\\.","read":"^r\\."}],
	  "topic_permissions": [{"user":"secu","vhost":"/sec1","exchange":"amq.topic","write":"^{username}\\.","read":""}],
	  "parameters": [{"vhost":"/sec1","component":"vhost-limits","name":"limits","value":{"max-queues":1}}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LoadDefinitions(d); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, pass string
		ok         bool
	}{{"guest", "guest", true}, {"secu", "secp", true}, {"secu", "wrong", false}, {"nobody", "x", false}} {
		if ok, reason := s.users.Authenticate(c.user, c.pass, loopback); ok != c.ok {
			t.Errorf("Authenticate(%s, %s) = %v (%s), want %v", c.user, c.pass, ok, reason, c.ok)
		}
	}
	u, _ := s.User("secu")
	if strings.Join(u.Tags, ",") != "management,policymaker" || u.Limits.MaxConnections != 1 || u.Limits.MaxChannels != -1 {
		t.Errorf("secu = %+v", u)
	}
	if l, err := s.VHostLimitsOf("/sec1"); err != nil || l.MaxQueues != 1 || l.MaxConnections != -1 {
		t.Errorf("limits of /sec1 = %+v, %v", l, err)
	}
	// The export round-trips the hash byte for byte.
	for _, du := range s.ExportDefinitions().Users {
		if du.Name == "secu" && du.PasswordHash != "ZfaHpf1CSIt9MyxendjEdmPU+Fzyd+JbWcSZYihTmkXlXRT2" {
			t.Errorf("exported hash %s", du.PasswordHash)
		}
	}
}

func TestUsers_HashAlgorithms(t *testing.T) {
	u := NewUsers()
	salt := []byte{1, 2, 3, 4}
	for _, alg := range []string{HashSHA256, HashSHA512, HashMD5} {
		newH, _ := newHash(alg)
		h := newH()
		h.Write(salt)
		h.Write([]byte("pw"))
		if err := u.Put(User{Name: alg, PasswordHash: append(append([]byte{}, salt...), h.Sum(nil)...), HashingAlgorithm: alg}); err != nil {
			t.Fatal(err)
		}
		if ok, _ := u.Authenticate(alg, "pw", remote); !ok {
			t.Errorf("%s: password refused", alg)
		}
		if ok, _ := u.Authenticate(alg, "pW", remote); ok {
			t.Errorf("%s: wrong password accepted", alg)
		}
	}
	if err := u.Put(User{Name: "x", PasswordHash: []byte{1, 2, 3}}); !errors.Is(err, ErrBadHash) {
		t.Errorf("short hash: %v", err)
	}
	if err := u.Put(User{Name: "x", PasswordHash: make([]byte, 36), HashingAlgorithm: "bcrypt"}); !errors.Is(err, ErrBadAlgorithm) {
		t.Errorf("unknown algorithm: %v", err)
	}
	if err := u.Put(User{Name: "nopass"}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := u.Authenticate("nopass", "", loopback); ok {
		t.Error("user without password logged in with PLAIN")
	}
	if ok, _ := u.AuthenticateExternal("nopass", remote); !ok {
		t.Error("user without password refused for EXTERNAL")
	}
}

func TestUsers_LoopbackOnly(t *testing.T) {
	s := newTestServer(t)
	if ok, _ := s.users.Authenticate("guest", "guest", loopback); !ok {
		t.Error("guest refused from loopback")
	}
	if ok, reason := s.users.Authenticate("guest", "guest", remote); ok || !strings.Contains(reason, "localhost") {
		t.Errorf("guest from a remote address: %v %q", ok, reason)
	}
	if ok, _ := s.users.AuthenticateExternal("guest", remote); ok {
		t.Error("guest via EXTERNAL from a remote address accepted")
	}
	// A guest defined later (definitions import) is loopback-only too: the rule is by name.
	if err := s.AddUser("guest", "other", nil); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.users.Authenticate("guest", "other", remote); ok {
		t.Error("re-created guest accepted from a remote address")
	}
	if err := s.AddUser("app", "pw", nil); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.users.Authenticate("app", "pw", remote); !ok {
		t.Error("app refused from a remote address")
	}
}

func TestCompilePerm(t *testing.T) {
	for _, c := range []struct {
		expr, name string
		want       bool
	}{
		{"", "", false},
		{"", "q", false},
		{".*", "", true},
		{".*", "anything", true},
		{"^q$", "q", true},
		{"^q$", "qq", false},
		{"q", "aqa", true}, // unanchored, as re:run
		{"^(a|b)\\.", "b.x", true},
		{"^(a|b)\\.", "c.x", false},
		{"^amq\\.default$", "amq.default", true},
		// Look-around and back-references, which RabbitMQ (Erlang's re, PCRE) accepts and RE2
		// refuses, go to the fallback engine.
		{"^(?!amq\\.).*", "orders", true},
		{"^(?!amq\\.).*", "amq.gen-1", false},
		{"^(?<!x)y", "y", true},
		{"^(a)\\1$", "aa", true},
		{"^(a)\\1$", "ab", false},
	} {
		m, err := compilePerm(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.match(c.name); got != c.want {
			t.Errorf("%q matches %q = %v, want %v", c.expr, c.name, got, c.want)
		}
	}
	for _, bad := range []string{"(", "[z-a]", "x**"} { // refused by both engines
		if _, err := compilePerm(bad); !errors.Is(err, ErrBadRegexp) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestCompileTopic(t *testing.T) {
	for _, c := range []struct {
		expr, key string
		want      bool
	}{
		{"", "", true}, // RabbitMQ turns "" into "^$"
		{"", "a.b", false},
		{".*", "a.b", true},
		{"^{username}\\.", "alice.x", true},
		{"^{username}\\.", "bob.x", false},
		{"^{vhost}$", "/t", true},
		{"^(?!{username}\\.)", "bob.x", true}, // look-ahead, as RabbitMQ accepts
		{"^(?!{username}\\.)", "alice.x", false},
	} {
		m, err := compileTopic(c.expr, "alice", "/t")
		if err != nil {
			t.Fatal(err)
		}
		if got := m.match(c.key); got != c.want {
			t.Errorf("%q matches %q = %v, want %v", c.expr, c.key, got, c.want)
		}
	}
}

// wantRefused asserts err is RabbitMQ's 403 with text.
func wantRefused(t *testing.T, err error, text string) {
	t.Helper()
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused || ae.Scope != amqp.ScopeChannel || ae.Text != text {
		t.Errorf("got %v, want 403 %q", err, text)
	}
}

func TestAuthorize(t *testing.T) {
	s := newTestServer(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddVHost("/t"))
	must(s.AddUser("u", "p", nil))
	must(s.SetPermissions(Permission{User: "u", VHost: "/t", Configure: "^cfg\\.", Write: "^w\\.|^amq\\.default$|^amq\\.topic$", Read: "^r\\.|^amq\\.topic$"}))
	must(s.SetTopicPermissions(TopicPermission{User: "u", VHost: "/t", Exchange: "amq.topic", Write: "^ok\\.", Read: "^{username}\\."}))
	must(s.SetTopicPermissions(TopicPermission{User: "u", VHost: "/t", Exchange: "amq.direct", Write: "^nope$", Read: "^nope$"}))
	ok := func(perm session.Perm, kind session.ResourceKind, name, key string) {
		t.Helper()
		if err := s.authorize("u", "/t", perm, kind, name, key); err != nil {
			t.Errorf("%v %v %q %q: %v", perm, kind, name, key, err)
		}
	}
	ok(session.PermConfigure, session.KindQueue, "cfg.q", "")
	ok(session.PermWrite, session.KindExchange, "", "any")
	ok(session.PermWrite, session.KindExchange, "amq.topic", "ok.k")
	ok(session.PermRead, session.KindExchange, "amq.topic", "u.k")
	ok(session.PermRead, session.KindQueue, "r.q", "")

	wantRefused(t, s.authorize("u", "/t", session.PermConfigure, session.KindQueue, "x", ""),
		"ACCESS_REFUSED - access to queue 'x' in vhost '/t' refused for user 'u'")
	wantRefused(t, s.authorize("u", "/t", session.PermWrite, session.KindExchange, "amq.direct", "k"),
		"ACCESS_REFUSED - access to exchange 'amq.direct' in vhost '/t' refused for user 'u'")
	wantRefused(t, s.authorize("u", "/t", session.PermWrite, session.KindExchange, "amq.topic", "bad.k"),
		"ACCESS_REFUSED - access to topic 'bad.k' in exchange 'amq.topic' in vhost '/t' refused for user 'u'")
	wantRefused(t, s.authorize("u", "/t", session.PermRead, session.KindExchange, "amq.topic", "other.k"),
		"ACCESS_REFUSED - access to topic 'other.k' in exchange 'amq.topic' in vhost '/t' refused for user 'u'")
	// No permission entry at all in "/".
	wantRefused(t, s.authorize("u", "/", session.PermRead, session.KindQueue, "r.q", ""),
		"ACCESS_REFUSED - access to queue 'r.q' in vhost '/' refused for user 'u'")

	// Topic permissions apply to topic exchanges only.
	must(s.SetPermissions(Permission{User: "u", VHost: "/t", Configure: "", Write: ".*", Read: ".*"}))
	ok(session.PermWrite, session.KindExchange, "amq.direct", "anything")
	must(s.ClearTopicPermissions("/t", "u", ""))
	ok(session.PermWrite, session.KindExchange, "amq.topic", "bad.k")
	must(s.ClearPermissions("/t", "u"))
	wantRefused(t, s.authorize("u", "/t", session.PermRead, session.KindQueue, "r.q", ""),
		"ACCESS_REFUSED - access to queue 'r.q' in vhost '/t' refused for user 'u'")
}

func TestStore_Errors(t *testing.T) {
	s := newTestServer(t)
	if err := s.SetPermissions(Permission{User: "nobody", VHost: "/", Configure: ".*"}); !errors.Is(err, ErrNoUser) {
		t.Errorf("unknown user: %v", err)
	}
	if err := s.SetPermissions(Permission{User: "guest", VHost: "/none", Configure: ".*"}); !errors.Is(err, ErrNoVHost) {
		t.Errorf("unknown vhost: %v", err)
	}
	if err := s.SetPermissions(Permission{User: "guest", VHost: "/", Configure: "(", Write: ".*"}); !errors.Is(err, ErrBadRegexp) {
		t.Errorf("bad regexp: %v", err)
	}
	if err := s.DeleteUser("nobody"); !errors.Is(err, ErrNoUser) {
		t.Errorf("delete unknown user: %v", err)
	}
	if err := s.DeleteVHost("/none"); !errors.Is(err, ErrNoVHost) {
		t.Errorf("delete unknown vhost: %v", err)
	}
	if err := s.SetVHostLimits("/none", NoVHostLimits); !errors.Is(err, ErrNoVHost) {
		t.Errorf("limits of unknown vhost: %v", err)
	}
}

func TestDeleteVHost_RemovesEverything(t *testing.T) {
	s := newTestServer(t)
	if err := s.AddVHost("/t"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddVHost("/t"); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := s.SetPermissions(Permission{User: "guest", VHost: "/t", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
		t.Fatal(err)
	}
	v := s.VHost("/t")
	if _, _, err := v.DeclareQueue(vhost.QueueDecl{Name: "q"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVHost("/t"); err != nil {
		t.Fatal(err)
	}
	if s.VHost("/t") != nil || len(v.Queues()) != 0 {
		t.Error("vhost or its queues survived")
	}
	for _, p := range s.Permissions() {
		if p.VHost == "/t" {
			t.Errorf("permission survived: %+v", p)
		}
	}
	// Re-created, it is empty and nobody has access.
	if err := s.AddVHost("/t"); err != nil {
		t.Fatal(err)
	}
	if s.VHost("/t").Queue("q") != nil || s.acl.lookup("/t", "guest") != nil {
		t.Error("re-created vhost is not empty")
	}
}

func TestVHostLimits_MaxQueues(t *testing.T) {
	s := newTestServer(t)
	if err := s.SetVHostLimits("/", VHostLimits{MaxConnections: -1, MaxQueues: 1}); err != nil {
		t.Fatal(err)
	}
	v := s.VHost("/")
	if _, _, err := v.DeclareQueue(vhost.QueueDecl{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.DeclareQueue(vhost.QueueDecl{Name: "a"}); err != nil {
		t.Errorf("redeclare at the limit: %v", err)
	}
	_, _, err := v.DeclareQueue(vhost.QueueDecl{Name: "b"})
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed || ae.Text != "PRECONDITION_FAILED - cannot declare queue 'b': queue limit in vhost '/' (1) is reached" {
		t.Errorf("over the limit: %v", err)
	}
}

func TestExportDefinitions_RoundTrip(t *testing.T) {
	a := newTestServer(t)
	a.AddVHost("/t")
	a.AddUser("u", "p", []string{"monitoring"})
	a.SetPermissions(Permission{User: "u", VHost: "/t", Configure: "^c", Write: "^w", Read: "^r"})
	a.SetTopicPermissions(TopicPermission{User: "u", VHost: "/t", Exchange: "amq.topic", Write: "^a", Read: "^b"})
	a.SetVHostLimits("/t", VHostLimits{MaxConnections: 3, MaxQueues: -1})
	a.SetUserLimits("u", UserLimits{MaxConnections: 2, MaxChannels: -1})
	// Topology too, as RabbitMQ's import (issue 11, item 12: --definitions skipped it).
	v := a.VHost("/t")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(v.SetPolicy(vhost.Policy{Name: "p", Pattern: "^(?!amq\\.)", Definition: amqp.Table{"message-ttl": int64(5), "ha-mode": "all"}}))
	_, err := v.DeclareExchange(vhost.ExchangeDecl{Name: "x", Type: "topic", Durable: true})
	must(err)
	_, _, err = v.DeclareQueue(vhost.QueueDecl{Name: "q", Durable: true, Args: amqp.Table{"x-max-length": int64(3)}})
	must(err)
	must(v.BindQueue("q", "x", "a.#", amqp.Table{"k": "v"}, nil))
	b := newTestServer(t)
	if err := b.LoadDefinitions(a.ExportDefinitions()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.users.Authenticate("u", "p", remote); !ok {
		t.Error("password lost")
	}
	if got := b.Permissions(); len(got) != 2 || got[1] != (Permission{User: "u", VHost: "/t", Configure: "^c", Write: "^w", Read: "^r"}) {
		t.Errorf("permissions %+v", got)
	}
	if got := b.TopicPermissions(); len(got) != 1 || got[0].Write != "^a" {
		t.Errorf("topic permissions %+v", got)
	}
	if l, _ := b.VHostLimitsOf("/t"); l.MaxConnections != 3 {
		t.Errorf("vhost limits %+v", l)
	}
	if u, _ := b.User("u"); u.Limits.MaxConnections != 2 || u.Tags[0] != "monitoring" {
		t.Errorf("user %+v", u)
	}
	bv := b.VHost("/t")
	if ps := bv.Policies(); len(ps) != 1 || ps[0].Definition["ha-mode"] != "all" {
		t.Errorf("policies %+v", ps)
	}
	q := bv.Queue("q")
	if q == nil || !q.Durable || bv.QueuePolicy(q) != "p" {
		t.Fatalf("queue %+v", q)
	}
	if bs := bv.Bindings(); len(bs) != 2 || bs[1].Source != "x" || bs[1].Key != "a.#" { // the default exchange's, then x's
		t.Errorf("bindings %+v", bs)
	}
	// Importing the same again writes nothing and changes nothing.
	if err := b.LoadDefinitions(a.ExportDefinitions()); err != nil {
		t.Fatal(err)
	}
}
