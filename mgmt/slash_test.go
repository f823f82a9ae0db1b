package mgmt_test

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// As RabbitMQ, every route answers the same with one trailing slash (/api/queues/%2F/,
// /api/connections/): tools that list connections that way must work.
func TestAPI_EveryRouteAcceptsATrailingSlash(t *testing.T) {
	e := start(t)
	writeFixture(t, e) // q, x, x2, bindings x→q and x→x2 (k), vhost v2, user bob, policy p1, a connection
	conn := url.PathEscape(e.getList("/api/connections")[0]["name"].(string))
	channels := e.getList("/api/channels")
	if len(channels) == 0 {
		t.Fatal("no channel")
	}
	channel := url.PathEscape(channels[0]["name"].(string))
	concrete := func(pattern string) string {
		path := strings.SplitN(pattern, " ", 2)[1]
		name := "q"
		switch {
		case strings.HasPrefix(path, "/api/exchanges/"):
			name = "x"
		case strings.HasPrefix(path, "/api/users/"), strings.HasPrefix(path, "/api/user-limits/"):
			name = "guest"
		case strings.HasPrefix(path, "/api/connections/"):
			name = conn
		case strings.HasPrefix(path, "/api/channels/"):
			name = channel
		case strings.HasPrefix(path, "/api/policies/"):
			name = "p1"
		}
		user := "guest"
		if strings.HasPrefix(path, "/api/topic-permissions/") {
			user = "bob" // the fixture's topic permission
		}
		dest := "q"
		if strings.Contains(path, "/e/{dest}") {
			dest = "x2"
		}
		return strings.NewReplacer("{vhost}", "%2F", "{name}", name, "{node}", "warren@test", "{source}", "x",
			"{dest}", dest, "{props}", "k", "{user}", user,
			"{port}", strconv.Itoa(e.b.Addr().(*net.TCPAddr).Port),
			"{protocol}", "amqp", "{within}", "1", "{unit}", "days").Replace(path)
	}
	n := 0
	for _, p := range e.m.Patterns() {
		if !strings.HasPrefix(p, "GET ") {
			continue
		}
		path := concrete(p)
		code, _ := e.do("GET", path, nil)
		if code != 200 {
			t.Errorf("GET %s (%s): %d, want 200", path, p, code)
			continue
		}
		if code, body := e.do("GET", path+"/", nil); code != 200 {
			t.Errorf("GET %s/: %d %s, want 200 as without the slash", path, code, body)
		}
		n++
	}
	for _, path := range []string{"/api/connections/", "/api/queues/", "/api/queues/%2F/", "/api/overview/"} {
		e.must(200, "GET", path, nil)
	}
	// Writes too.
	e.must(201, "PUT", "/api/queues/%2F/slashed/", map[string]any{})
	e.must(204, "DELETE", "/api/queues/%2F/slashed/", nil)
	t.Logf("%d GET routes checked", n)
}
