package mgmt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/warrenmq/warren/mgmt"
)

// writeReq is one concrete request to a write route: it changes the fixture's state when
// it is let through.
type writeReq struct {
	method, path string
	body         any // JSON-encoded; nil: no body
}

// writeFixture gives the broker something for every write route to change: queue q with a
// message, exchanges x (topic) and x2 (fanout) with bindings x→q and x→x2 (key k), vhost v2,
// user bob with permissions on "/", policy p1 and an AMQP connection. It returns one request
// per write route, keyed by the route's pattern.
func writeFixture(t *testing.T, e *env) map[string]writeReq {
	t.Helper()
	e.must(201, "PUT", "/api/queues/%2F/q", map[string]any{})
	e.must(201, "PUT", "/api/exchanges/%2F/x", map[string]any{"type": "topic"})
	e.must(201, "PUT", "/api/exchanges/%2F/x2", map[string]any{"type": "fanout"})
	e.must(201, "POST", "/api/bindings/%2F/e/x/q/q", map[string]any{"routing_key": "k"})
	e.must(201, "POST", "/api/bindings/%2F/e/x/e/x2", map[string]any{"routing_key": "k"})
	e.must(200, "POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"routing_key": "q", "payload": "m", "payload_encoding": "string", "properties": map[string]any{}})
	e.must(201, "PUT", "/api/vhosts/v2", nil)
	e.must(201, "PUT", "/api/users/bob", map[string]any{"password": "pw", "tags": "management"})
	e.must(201, "PUT", "/api/permissions/%2F/bob", map[string]any{"configure": ".*", "write": ".*", "read": ".*"})
	e.must(201, "PUT", "/api/policies/%2F/p1", map[string]any{"pattern": "^nothing$", "definition": map[string]any{"max-length": 1}})
	e.must(204, "PUT", "/api/vhost-limits/v2/max-connections", map[string]any{"value": 5})
	e.must(204, "PUT", "/api/user-limits/bob/max-channels", map[string]any{"value": 5})
	e.must(201, "PUT", "/api/topic-permissions/%2F/bob", map[string]any{"exchange": "x", "write": ".*", "read": ".*"})
	e.dial()
	conns := e.getList("/api/connections")
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	conn := url.PathEscape(conns[0]["name"].(string))
	mallory := map[string]any{
		"users":       []any{map[string]any{"name": "mallory", "password_hash": rabbitHash("mallory"), "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "administrator"}},
		"permissions": []any{map[string]any{"user": "mallory", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}},
	}
	return map[string]writeReq{
		"DELETE /api/connections/{name}":                                  {"DELETE", "/api/connections/" + conn, nil},
		"PUT /api/exchanges/{vhost}/{name}":                               {"PUT", "/api/exchanges/%2F/evil", map[string]any{"type": "direct"}},
		"DELETE /api/exchanges/{vhost}/{name}":                            {"DELETE", "/api/exchanges/%2F/x2", nil},
		"POST /api/exchanges/{vhost}/{name}/publish":                      {"POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"routing_key": "q", "payload": "evil", "payload_encoding": "string", "properties": map[string]any{}}},
		"PUT /api/queues/{vhost}/{name}":                                  {"PUT", "/api/queues/%2F/evil", map[string]any{}},
		"DELETE /api/queues/{vhost}/{name}":                               {"DELETE", "/api/queues/%2F/q", nil},
		"DELETE /api/queues/{vhost}/{name}/contents":                      {"DELETE", "/api/queues/%2F/q/contents", nil},
		"POST /api/queues/{vhost}/{name}/get":                             {"POST", "/api/queues/%2F/q/get", map[string]any{"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}},
		"POST /api/bindings/{vhost}/e/{source}/q/{dest}":                  {"POST", "/api/bindings/%2F/e/x/q/q", map[string]any{"routing_key": "evil"}},
		"DELETE /api/bindings/{vhost}/e/{source}/q/{dest}/{props}":        {"DELETE", "/api/bindings/%2F/e/x/q/q/k", nil},
		"POST /api/bindings/{vhost}/e/{source}/e/{dest}":                  {"POST", "/api/bindings/%2F/e/x/e/x2", map[string]any{"routing_key": "evil"}},
		"DELETE /api/bindings/{vhost}/e/{source}/e/{dest}/{props}":        {"DELETE", "/api/bindings/%2F/e/x/e/x2/k", nil},
		"PUT /api/vhosts/{vhost}":                                         {"PUT", "/api/vhosts/evil", nil},
		"DELETE /api/vhosts/{vhost}":                                      {"DELETE", "/api/vhosts/v2", nil},
		"PUT /api/users/{name}":                                           {"PUT", "/api/users/mallory", map[string]any{"password": "pw", "tags": "administrator"}},
		"DELETE /api/users/{name}":                                        {"DELETE", "/api/users/bob", nil},
		"PUT /api/permissions/{vhost}/{user}":                             {"PUT", "/api/permissions/v2/bob", map[string]any{"configure": ".*", "write": ".*", "read": ".*"}},
		"DELETE /api/permissions/{vhost}/{user}":                          {"DELETE", "/api/permissions/%2F/bob", nil},
		"PUT /api/policies/{vhost}/{name}":                                {"PUT", "/api/policies/%2F/evil", map[string]any{"pattern": "^q$", "definition": map[string]any{"max-length": 0}}},
		"DELETE /api/policies/{vhost}/{name}":                             {"DELETE", "/api/policies/%2F/p1", nil},
		"PUT /api/vhost-limits/{vhost}/{name}":                            {"PUT", "/api/vhost-limits/%2F/max-queues", map[string]any{"value": 100}},
		"DELETE /api/vhost-limits/{vhost}/{name}":                         {"DELETE", "/api/vhost-limits/v2/max-connections", nil},
		"PUT /api/user-limits/{user}/{name}":                              {"PUT", "/api/user-limits/bob/max-connections", map[string]any{"value": 100}},
		"DELETE /api/user-limits/{user}/{name}":                           {"DELETE", "/api/user-limits/bob/max-channels", nil},
		"PUT /api/topic-permissions/{vhost}/{user}":                       {"PUT", "/api/topic-permissions/%2F/bob", map[string]any{"exchange": "x2", "write": "evil", "read": ".*"}},
		"DELETE /api/topic-permissions/{vhost}/{user}":                    {"DELETE", "/api/topic-permissions/%2F/bob", nil},
		"POST /api/definitions":                                           {"POST", "/api/definitions", mallory},
		"POST /api/definitions/{vhost}":                                   {"POST", "/api/definitions/%2F", map[string]any{"queues": []any{map[string]any{"name": "evil", "vhost": "/", "durable": true, "auto_delete": false, "arguments": map[string]any{}}}}},
		"DELETE /api/queues/{vhost}/{name} (trailing slash)":              {"DELETE", "/api/queues/%2F/q/", nil},
		"POST /api/exchanges/{vhost}/{name}/publish (default vhost name)": {"POST", "/api/exchanges/%2F/x/publish", map[string]any{"routing_key": "k", "payload": "evil", "payload_encoding": "string", "properties": map[string]any{}}},
	}
}

// state is everything a write route can change, as guest sees it.
func state(t *testing.T, e *env) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"/api/definitions", "/api/policies", "/api/queues?columns=vhost,name,messages", "/api/connections?columns=name"} {
		var v any
		if err := json.Unmarshal(e.must(200, "GET", p, nil), &v); err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		b.WriteString(p + "\n" + canon(v) + "\n")
	}
	return b.String()
}

// canon encodes v as JSON with every list sorted, so that listing order does not count.
func canon(v any) string {
	switch x := v.(type) {
	case []any:
		items := make([]string, len(x))
		for i, e := range x {
			items[i] = canon(e)
		}
		slices.Sort(items)
		return "[" + strings.Join(items, ",") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b strings.Builder
		b.WriteString("{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(strconvQuote(k) + ":" + canon(x[k]))
		}
		return b.String() + "}"
	}
	data, _ := json.Marshal(v)
	return string(data)
}

func strconvQuote(s string) string {
	data, _ := json.Marshal(s)
	return string(data)
}

// send performs r as guest with the given headers and body bytes; it returns the status.
func send(t *testing.T, e *env, method, path string, body []byte, header ...string) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func bodyOf(t *testing.T, v any) []byte {
	t.Helper()
	if v == nil {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The table must name every write route the server has: a new route without an entry fails.
func TestCSRF_FixtureCoversEveryWriteRoute(t *testing.T) {
	e := start(t)
	reqs := writeFixture(t, e)
	for _, p := range e.m.Patterns() {
		if strings.HasPrefix(p, "GET ") || clusterWriteRoutes[p] {
			continue
		}
		if _, ok := reqs[p]; !ok {
			t.Errorf("write route %q has no request in writeFixture", p)
		}
	}
}

// Every write route, sent with the credentials a browser would attach, from another origin:
// refused with 403 and nothing changes, whatever the content type. The same request from the
// API's own origin goes through and changes the state (so each request is a real write).
func TestCSRF_EveryWriteRouteRefusesCrossOrigin(t *testing.T) {
	probe := start(t)
	routes := writeFixture(t, probe)
	names := make([]string, 0, len(routes))
	for k := range routes {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			e := start(t)
			w := writeFixture(t, e)[name]
			body := bodyOf(t, w.body)
			own := e.http.URL // http://127.0.0.1:port
			before := state(t, e)
			for _, h := range [][]string{
				{"Origin", "http://evil.example", "Content-Type", "application/json"},
				{"Origin", "http://evil.example", "Content-Type", "text/plain"},
				{"Origin", "http://evil.example", "Content-Type", "application/x-www-form-urlencoded"},
				{"Origin", "http://evil.example"},
				{"Origin", "null", "Content-Type", "application/json"},
				{"Origin", strings.Replace(own, "127.0.0.1", "localhost", 1), "Content-Type", "application/json"},
				{"Origin", own + "1", "Content-Type", "application/json"}, // another port
				{"Referer", "http://evil.example/page.html", "Content-Type", "application/json"},
			} {
				if code := send(t, e, w.method, w.path, body, h...); code != http.StatusForbidden {
					t.Errorf("%s %s with %v: %d, want 403", w.method, w.path, h, code)
				}
				if after := state(t, e); after != before {
					t.Fatalf("%s %s with %v changed the broker:\nbefore:\n%s\nafter:\n%s", w.method, w.path, h, before, after)
				}
			}
			var ok []string
			if body != nil {
				ok = []string{"Content-Type", "application/json"}
			}
			if code := send(t, e, w.method, w.path, body, append(ok, "Origin", own, "Referer", own+"/")...); code/100 != 2 {
				t.Fatalf("%s %s from its own origin: %d, want 2xx", w.method, w.path, code)
			}
			eventually(t, func() string {
				if state(t, e) == before {
					return w.method + " " + w.path + " from its own origin did not change the broker"
				}
				return ""
			})
		})
	}
}

// A write's body must be application/json: a cross-site form (text/plain, urlencoded,
// multipart) or a fetch() with a Blob body (no Content-Type) is answered 415 and changes
// nothing, even without an Origin header. A POST always needs the JSON type.
func TestCSRF_EveryWriteRouteRefusesNonJSONBodies(t *testing.T) {
	e := start(t)
	routes := writeFixture(t, e)
	before := state(t, e)
	for name, w := range routes {
		body := bodyOf(t, w.body)
		if body == nil && w.method != "POST" {
			continue // DELETE and bodiless PUT carry no body to misread
		}
		if body == nil {
			body = []byte{}
		}
		for _, h := range [][]string{
			{"Content-Type", "text/plain"},
			{"Content-Type", "text/plain;charset=UTF-8"},
			{"Content-Type", "application/x-www-form-urlencoded"},
			{"Content-Type", "multipart/form-data; boundary=xyz"},
			{}, // no Content-Type at all
		} {
			if code := send(t, e, w.method, w.path, body, h...); code != http.StatusUnsupportedMediaType {
				t.Errorf("%s: %s %s with %v: %d, want 415", name, w.method, w.path, h, code)
			}
		}
	}
	if after := state(t, e); after != before {
		t.Fatalf("non-JSON writes changed the broker:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// JSON with parameters is JSON.
	e.must(201, "PUT", "/api/queues/%2F/typed", nil)
	if code := send(t, e, "PUT", "/api/queues/%2F/typed2", []byte(`{}`), "Content-Type", "application/json; charset=utf-8"); code != 201 {
		t.Fatalf("PUT with application/json; charset=utf-8: %d, want 201", code)
	}
}

// The request of issue 17, verbatim in substance: a text/plain POST /api/definitions naming an
// administrator mallory with a password the attacker knows. RabbitMQ answers 415.
func TestCSRF_TextPlainDefinitionsImportCreatesNobody(t *testing.T) {
	e := start(t)
	body := `{"users":[{"name":"mallory","password_hash":"` + rabbitHash("mallory") + `",` +
		`"hashing_algorithm":"rabbit_password_hashing_sha256","tags":"administrator"}],` +
		`"permissions":[{"user":"mallory","vhost":"/","configure":".*","write":".*","read":".*"}]}`
	if code := send(t, e, "POST", "/api/definitions", []byte(body), "Content-Type", "text/plain"); code != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain definitions import: %d, want 415", code)
	}
	e.must(404, "GET", "/api/users/mallory", nil)
	if _, ok := e.b.User("mallory"); ok {
		t.Fatal("mallory exists")
	}
	if code, _ := e.doAs("mallory", "mallory", "GET", "/api/users", nil); code != http.StatusUnauthorized {
		t.Fatalf("mallory signs in: %d, want 401", code)
	}
	// The same import as JSON is what creates her (the request above was not a no-op by itself).
	if code := send(t, e, "POST", "/api/definitions", []byte(body), "Content-Type", "application/json"); code/100 != 2 {
		t.Fatalf("JSON definitions import: %d", code)
	}
	if code, _ := e.doAs("mallory", "mallory", "GET", "/api/users", nil); code != http.StatusOK {
		t.Fatalf("mallory after a JSON import: %d, want 200", code)
	}
}

// Without configured origins the API sends no CORS headers, so no other site may read it or
// pass a preflight; with --http-cors-origins the listed origin may, and only it.
func TestCORS_OnlyForConfiguredOrigins(t *testing.T) {
	e := start(t)
	req, _ := http.NewRequest("OPTIONS", e.http.URL+"/api/queues/%2F/q", nil)
	req.Header.Set("Origin", "https://ops.example")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("preflight without configured origins: header %s: %s", k, resp.Header.Get(k))
		}
	}

	e = startWith(t, mgmt.Config{CORSOrigins: []string{"https://ops.example"}})
	resp, err = http.DefaultClient.Do(req.Clone(req.Context()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req.URL, _ = url.Parse(e.http.URL + "/api/queues/%2F/q")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://ops.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("preflight from a configured origin: %d %v", resp.StatusCode, resp.Header)
	}
	if code := send(t, e, "PUT", "/api/queues/%2F/from-ops", []byte(`{}`), "Content-Type", "application/json", "Origin", "https://ops.example"); code != 201 {
		t.Fatalf("PUT from the configured origin: %d, want 201", code)
	}
	if code := send(t, e, "PUT", "/api/queues/%2F/from-evil", []byte(`{}`), "Content-Type", "application/json", "Origin", "https://evil.example"); code != 403 {
		t.Fatalf("PUT from another origin: %d, want 403", code)
	}
	req, _ = http.NewRequest("OPTIONS", e.http.URL+"/api/queues/%2F/q", nil)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Fatalf("preflight from an unlisted origin: Access-Control-Allow-Origin %q", v)
	}
}

// The dashboard's own requests (X-Requested-With) get 401 without a challenge, so a browser
// never prompts for, and never caches, Basic credentials for the origin; other clients get
// RabbitMQ's challenge.
func TestAuth_NoChallengeForTheDashboardsRequests(t *testing.T) {
	e := start(t)
	for _, h := range []string{"", "XMLHttpRequest"} {
		req, _ := http.NewRequest("GET", e.http.URL+"/api/whoami", nil)
		req.SetBasicAuth("guest", "wrong")
		if h != "" {
			req.Header.Set("X-Requested-With", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != 401 || (h == "") != (got != "") {
			t.Errorf("X-Requested-With %q: %d, WWW-Authenticate %q", h, resp.StatusCode, got)
		}
	}
}

// rabbitHash is RabbitMQ's rabbit_password_hashing_sha256 of password with a fixed salt:
// base64(salt + sha256(salt + password)).
func rabbitHash(password string) string {
	salt := []byte{1, 2, 3, 4}
	sum := sha256.Sum256(append(append([]byte{}, salt...), password...))
	return base64.StdEncoding.EncodeToString(append(salt, sum[:]...))
}

// clusterWriteRoutes change nothing on a single node (400: not clustered), so the state test
// above cannot cover them; TestCSRF_ClusterRoutesRefuseCrossOrigin checks their refusal.
var clusterWriteRoutes = map[string]bool{
	"DELETE /api/cluster/nodes/{node}":                 true,
	"POST /api/queues/{vhost}/{name}/members":          true,
	"DELETE /api/queues/{vhost}/{name}/members/{node}": true,
	"POST /api/queues/{vhost}/{name}/leader":           true,
	"POST /api/rebalance":                              true,
	"POST /api/cluster/nodes/{node}/drain":             true,
	"POST /api/cluster/nodes/{node}/revive":            true,
}

func TestCSRF_ClusterRoutesRefuseCrossOrigin(t *testing.T) {
	e := start(t)
	if code := send(t, e, "DELETE", "/api/cluster/nodes/x", nil, "Origin", "http://evil.example"); code != http.StatusForbidden {
		t.Fatalf("cross-origin forget: %d, want 403", code)
	}
	if code := send(t, e, "DELETE", "/api/cluster/nodes/x", nil); code != http.StatusBadRequest {
		t.Fatalf("forget on a single node: %d, want 400", code)
	}
	if code := send(t, e, "DELETE", "/api/queues/%2F/q/members/x", nil, "Origin", "http://evil.example"); code != http.StatusForbidden {
		t.Fatalf("cross-origin member delete: %d, want 403", code)
	}
	if code := send(t, e, "DELETE", "/api/queues/%2F/q/members/x", nil); code != http.StatusBadRequest {
		t.Fatalf("member delete on a single node: %d, want 400", code)
	}
}
