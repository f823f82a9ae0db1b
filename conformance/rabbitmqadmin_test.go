package conformance

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rabbitmqadmin drives the broker's management API with RabbitMQ's own CLI, rabbitmqadmin,
// fetched from a RabbitMQ management plugin (RABBITMQADMIN_URL, default
// http://127.0.0.1:15672/cli/rabbitmqadmin). The test is skipped when that RabbitMQ, python3
// or the broker's HTTP address is missing. The script is kept in a temporary folder only.
func rabbitmqadmin(t *testing.T) func(args ...string) string {
	t.Helper()
	if httpAddr == "" {
		t.Skip("rabbitmqadmin: the broker's HTTP address is unknown (set CONFORMANCE_HTTP against an external broker)")
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		clientMissing(t, "rabbitmqadmin: python3 not installed")
	}
	src := os.Getenv("RABBITMQADMIN_URL")
	if src == "" {
		src = "http://127.0.0.1:15672/cli/rabbitmqadmin"
	}
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(src)
	if err != nil {
		clientMissing(t, "rabbitmqadmin: cannot fetch %s from a running RabbitMQ: %v", src, err)
	}
	script, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(string(script), "#!") {
		clientMissing(t, "rabbitmqadmin: %s answered %d", src, resp.StatusCode)
	}
	path := filepath.Join(t.TempDir(), "rabbitmqadmin")
	if err := os.WriteFile(path, script, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command(python, append([]string{path, "-H", host, "-P", port, "-u", "guest", "-p", "guest"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("rabbitmqadmin %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}

func TestRabbitmqadmin_ListDeclarePublishGetDelete(t *testing.T) {
	admin := rabbitmqadmin(t)
	q, x := uniqueName(t, "q"), uniqueName(t, "x")
	t.Cleanup(func() { queueDeleteAfter(q) })

	admin("list", "queues")
	admin("show", "overview")
	admin("declare", "queue", "name="+q, "durable=false", `arguments={"x-max-length": 100}`)
	admin("declare", "exchange", "name="+x, "type=topic", "durable=false")
	admin("declare", "binding", "source="+x, "destination="+q, "routing_key=a.#")
	if out := admin("publish", "exchange="+x, "routing_key=a.b", "payload=hello from rabbitmqadmin"); !strings.Contains(out, "Message published") || strings.Contains(out, "NOT routed") {
		t.Fatalf("publish:\n%s", out)
	}
	waitListed(t, func() string { return admin("-f", "tsv", "list", "queues", "name", "messages") }, q+"\t1")
	if out := admin("list", "bindings", "source", "destination", "routing_key"); !strings.Contains(out, "a.#") {
		t.Fatalf("list bindings:\n%s", out)
	}

	var msgs []map[string]any
	if err := json.Unmarshal([]byte(admin("-f", "raw_json", "get", "queue="+q, "ackmode=ack_requeue_true")), &msgs); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0]["payload"] != "hello from rabbitmqadmin" || msgs[0]["routing_key"] != "a.b" {
		t.Fatalf("get (requeue): %v", msgs)
	}
	if out := admin("get", "queue="+q, "ackmode=ack_requeue_false"); !strings.Contains(out, "hello from rabbitmqadmin") {
		t.Fatalf("get (ack):\n%s", out)
	}
	waitListed(t, func() string { return admin("-f", "tsv", "list", "queues", "name", "messages") }, q+"\t0")

	var bindings []map[string]any
	json.Unmarshal([]byte(admin("-f", "raw_json", "list", "bindings")), &bindings)
	key := ""
	for _, b := range bindings {
		if b["source"] == x && b["destination"] == q {
			key, _ = b["properties_key"].(string)
		}
	}
	if key == "" {
		t.Fatalf("binding %s -> %s not listed: %v", x, q, bindings)
	}
	admin("delete", "binding", "source="+x, "destination_type=queue", "destination="+q, "properties_key="+key)
	admin("purge", "queue", "name="+q)
	admin("delete", "queue", "name="+q)
	admin("delete", "exchange", "name="+x)
	if out := admin("-f", "tsv", "list", "queues", "name"); strings.Contains(out, q) {
		t.Fatalf("queue still listed:\n%s", out)
	}
	for _, what := range []string{"exchanges", "connections", "channels", "consumers", "nodes", "vhosts", "users", "permissions"} {
		admin("list", what)
	}
	admin("export", filepath.Join(t.TempDir(), "defs.json"))
}

// waitListed polls list until its output contains want: RabbitMQ's message counts lag by its
// stats interval (5 s), Warren's do not.
func waitListed(t *testing.T, list func() string, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out := list()
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not listed:\n%s", want, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestHTTP_TrailingSlashAccepted: the management API answers with a trailing slash as
// without one (client libraries' tools list /api/connections/ to find a connection by name).
func TestHTTP_TrailingSlashAccepted(t *testing.T) {
	if httpAddr == "" {
		t.Skip("no management API address")
	}
	q := uniqueName(t, "q")
	t.Cleanup(func() { queueDeleteAfter(q) })
	for _, p := range []string{"/api/connections/", "/api/queues/", "/api/queues/%2F/", "/api/overview/", "/api/exchanges/%2F/",
		"/api/vhosts/", "/api/vhosts/%2F/", "/api/bindings/%2F/", "/api/exchanges/%2F/amq.direct/", "/api/users/guest/", "/api/whoami/"} {
		if code, body := httpAs(t, httpAddr, "guest", "guest", "GET", p, ""); code != 200 {
			t.Errorf("GET %s: %d %s, want 200", p, code, body)
		}
	}
	if code, body := httpAs(t, httpAddr, "guest", "guest", "PUT", "/api/queues/%2F/"+url.PathEscape(q)+"/", "{}"); code != 201 {
		t.Errorf("PUT a queue with a trailing slash: %d %s, want 201", code, body)
	}
	if code, body := httpAs(t, httpAddr, "guest", "guest", "GET", "/api/queues/%2F/"+url.PathEscape(q)+"/", ""); code != 200 {
		t.Errorf("GET the queue with a trailing slash: %d %s, want 200", code, body)
	}
}
