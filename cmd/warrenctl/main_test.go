package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/mgmt"
)

// startNode runs an in-process broker with its management API and returns the API's URL.
func startNode(t *testing.T) string {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t))
	b, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:0", DataDir: t.TempDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	m := mgmt.New(mgmt.Config{Broker: b, Log: log, SampleInterval: time.Second})
	hs := httptest.NewServer(m)
	t.Cleanup(func() { hs.Close(); m.Close(); b.Close() })
	return hs.URL
}

// ctl runs warrenctl against url and returns its output.
func ctl(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(append([]string{"--url", url}, args...), &out)
	return out.String(), err
}

func mustCtl(t *testing.T, url string, args ...string) string {
	t.Helper()
	out, err := ctl(t, url, args...)
	if err != nil {
		t.Fatalf("warrenctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestWarrenctl_DeclarePublishGetListDelete(t *testing.T) {
	url := startNode(t)
	if out := mustCtl(t, url, "status"); !strings.Contains(out, "Warren") || !strings.Contains(out, "queues") {
		t.Fatalf("status:\n%s", out)
	}
	mustCtl(t, url, "declare", "queue", "jobs", "--durable", "--arguments", `{"x-max-length": 10}`)
	mustCtl(t, url, "declare", "exchange", "work", "--type", "topic")
	mustCtl(t, url, "declare", "binding", "work", "jobs", "--routing-key", "job.*")
	if out := mustCtl(t, url, "publish", "work", "job.new", "hello"); strings.TrimSpace(out) != "routed" {
		t.Fatalf("publish: %q", out)
	}
	if out := mustCtl(t, url, "publish", "amq.default", "nowhere", "x"); strings.TrimSpace(out) != "not routed" {
		t.Fatalf("unroutable publish: %q", out)
	}
	out := mustCtl(t, url, "list", "queues")
	if !strings.Contains(out, "messages_ready") || !strings.Contains(out, "jobs") {
		t.Fatalf("list queues:\n%s", out)
	}
	var bindings []map[string]any
	if err := json.Unmarshal([]byte(mustCtl(t, url, "--json", "list", "bindings")), &bindings); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range bindings {
		found = found || b["source"] == "work" && b["routing_key"] == "job.*"
	}
	if !found {
		t.Fatalf("bindings: %v", bindings)
	}
	if out := mustCtl(t, url, "get", "jobs"); !strings.Contains(out, "hello") {
		t.Fatalf("get:\n%s", out)
	}
	var msgs []map[string]any
	json.Unmarshal([]byte(mustCtl(t, url, "--json", "get", "jobs", "--requeue=false")), &msgs)
	if len(msgs) != 1 || msgs[0]["redelivered"] != true {
		t.Fatalf("get --requeue=false: %v", msgs)
	}
	var qs []map[string]any
	json.Unmarshal([]byte(mustCtl(t, url, "--json", "list", "queues")), &qs)
	if len(qs) != 1 || qs[0]["messages"] != float64(0) {
		t.Fatalf("queues after get: %v", qs)
	}
	mustCtl(t, url, "publish", "", "jobs", "again")
	mustCtl(t, url, "purge", "jobs")
	mustCtl(t, url, "delete", "queue", "jobs")
	mustCtl(t, url, "delete", "exchange", "work")
	_, err := ctl(t, url, "delete", "queue", "jobs")
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("deleting a missing queue: %v, want HTTP 404", err)
	}
	for _, what := range []string{"exchanges", "connections", "channels", "consumers", "vhosts"} {
		mustCtl(t, url, "list", what)
	}
}

func TestWarrenctl_ExportImportDefinitions(t *testing.T) {
	src, dst := startNode(t), startNode(t)
	mustCtl(t, src, "declare", "queue", "orders", "--durable")
	mustCtl(t, src, "declare", "exchange", "shop", "--type", "fanout", "--durable")
	mustCtl(t, src, "declare", "binding", "shop", "orders")
	file := filepath.Join(t.TempDir(), "defs.json")
	mustCtl(t, src, "export", file)
	data, err := os.ReadFile(file)
	if err != nil || !json.Valid(data) {
		t.Fatalf("export file: %v %q", err, data)
	}
	mustCtl(t, dst, "import", file)
	out := mustCtl(t, dst, "list", "bindings")
	if !strings.Contains(out, "shop") || !strings.Contains(out, "orders") {
		t.Fatalf("imported bindings:\n%s", out)
	}
}

func TestWarrenctl_UsageAndAuthErrors(t *testing.T) {
	url := startNode(t)
	var u usageError
	if _, err := ctl(t, url); !errors.As(err, &u) {
		t.Fatalf("no command: %v, want usage", err)
	}
	if _, err := ctl(t, url, "list", "bogus"); !errors.As(err, &u) {
		t.Fatalf("list bogus: %v, want usage", err)
	}
	_, err := ctl(t, url, "--password", "wrong", "status")
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("bad password: %v, want HTTP 401", err)
	}
}

// ctlIn runs warrenctl with stdin in.
func ctlIn(t *testing.T, url, in string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runWith(append([]string{"--url", url}, args...), strings.NewReader(in), &out)
	return out.String(), err
}

func mustJSON(t *testing.T, url string, args ...string) []map[string]any {
	t.Helper()
	var l []map[string]any
	out := mustCtl(t, url, append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("warrenctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return l
}

// The rabbitmqctl commands operators use: vhosts, policies, limits, permissions and topic
// permissions, users with a password from stdin, tags, password changes.
func TestWarrenctl_VHostsPoliciesLimitsPermissions(t *testing.T) {
	url := startNode(t)
	mustCtl(t, url, "add", "vhost", "orders")
	if out := mustCtl(t, url, "list", "vhosts"); !strings.Contains(out, "orders") {
		t.Fatalf("list vhosts:\n%s", out)
	}
	mustCtl(t, url, "set", "policy", "-p", "orders", "ttl", "^jobs", `{"message-ttl": 60000}`, "--priority", "3", "--apply-to", "queues")
	pols := mustJSON(t, url, "list", "policies", "--vhost", "orders")
	if len(pols) != 1 || pols[0]["name"] != "ttl" || pols[0]["apply-to"] != "queues" || pols[0]["priority"] != float64(3) {
		t.Fatalf("policies: %v", pols)
	}
	if out := mustCtl(t, url, "list", "policies", "-p", "orders"); !strings.Contains(out, `{"message-ttl":60000}`) {
		t.Fatalf("list policies:\n%s", out)
	}
	mustCtl(t, url, "clear", "policy", "-p", "orders", "ttl")
	if pols := mustJSON(t, url, "list", "policies", "-p", "orders"); len(pols) != 0 {
		t.Fatalf("policies after clear: %v", pols)
	}

	mustCtl(t, url, "set", "vhost-limits", "-p", "orders", `{"max-connections": 10, "max-queues": 5}`)
	lim := mustJSON(t, url, "list", "vhost-limits", "-p", "orders")
	if len(lim) != 1 || !reflect.DeepEqual(lim[0]["value"], map[string]any{"max-connections": 10.0, "max-queues": 5.0}) {
		t.Fatalf("vhost limits: %v", lim)
	}
	mustCtl(t, url, "clear", "vhost-limits", "-p", "orders", "max-queues")
	if lim := mustJSON(t, url, "list", "vhost-limits", "-p", "orders"); len(lim) != 1 || !reflect.DeepEqual(lim[0]["value"], map[string]any{"max-connections": 10.0}) {
		t.Fatalf("vhost limits after clearing max-queues: %v", lim)
	}
	mustCtl(t, url, "clear", "vhost-limits", "-p", "orders")
	if lim := mustJSON(t, url, "list", "vhost-limits", "-p", "orders"); len(lim) != 0 {
		t.Fatalf("vhost limits after clear: %v", lim)
	}

	// A password from stdin (not a terminal: its first line), then a changed one.
	if _, err := ctlIn(t, url, "s3cret\n", "add", "user", "app", "--tags", "management"); err != nil {
		t.Fatal(err)
	}
	mustCtl(t, url, "set", "permissions", "-p", "orders", "app", "--configure", "^app\\.", "--write", ".*", "--read", ".*")
	if out := mustCtl(t, url, "--user", "app", "--password", "s3cret", "list", "vhosts"); !strings.Contains(out, "orders") {
		t.Fatalf("app's vhosts:\n%s", out)
	}
	if _, err := ctlIn(t, url, "n3w\n", "change", "password", "app", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	var ae *apiError
	if _, err := ctl(t, url, "--user", "app", "--password", "s3cret", "status"); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("old password: %v, want 401", err)
	}
	mustCtl(t, url, "--user", "app", "--password", "n3w", "status")
	if _, err := ctlIn(t, url, "", "add", "user", "nopass"); err == nil {
		t.Fatal("add user with an empty stdin: no error")
	}
	mustCtl(t, url, "set", "user-tags", "app", "monitoring", "policymaker")
	users := mustJSON(t, url, "list", "users")
	for _, u := range users {
		if u["name"] == "app" && !reflect.DeepEqual(u["tags"], []any{"monitoring", "policymaker"}) {
			t.Fatalf("app's tags: %v", u["tags"])
		}
	}
	mustCtl(t, url, "--user", "app", "--password", "n3w", "status") // the password stayed

	mustCtl(t, url, "set", "user-limits", "app", `{"max-channels": 20}`)
	if l := mustJSON(t, url, "list", "user-limits"); len(l) != 1 || l[0]["user"] != "app" || !reflect.DeepEqual(l[0]["value"], map[string]any{"max-channels": 20.0}) {
		t.Fatalf("user limits: %v", l)
	}
	mustCtl(t, url, "clear", "user-limits", "app", "all")
	if l := mustJSON(t, url, "list", "user-limits"); len(l) != 0 {
		t.Fatalf("user limits after clear: %v", l)
	}

	mustCtl(t, url, "set", "topic-permissions", "-p", "orders", "app", "amq.topic", "^orders\\.", ".*")
	tp := mustJSON(t, url, "list", "topic-permissions")
	if len(tp) != 1 || tp[0]["exchange"] != "amq.topic" || tp[0]["write"] != "^orders\\." || tp[0]["vhost"] != "orders" {
		t.Fatalf("topic permissions: %v", tp)
	}
	mustCtl(t, url, "clear", "topic-permissions", "-p", "orders", "app")
	if tp := mustJSON(t, url, "list", "topic-permissions"); len(tp) != 0 {
		t.Fatalf("topic permissions after clear: %v", tp)
	}
	mustCtl(t, url, "clear", "permissions", "-p", "orders", "app")
	for _, p := range mustJSON(t, url, "list", "permissions") {
		if p["user"] == "app" {
			t.Fatalf("app's permissions after clear: %v", p)
		}
	}
	mustCtl(t, url, "delete", "vhost", "orders")
	if out := mustCtl(t, url, "list", "vhosts"); strings.Contains(out, "orders") {
		t.Fatalf("vhosts after delete:\n%s", out)
	}
	mustCtl(t, url, "delete", "user", "app")
	// Usage errors: a wrong number of arguments, a bad definition, an unknown kind.
	var u usageError
	for _, args := range [][]string{{"set", "policy", "p", "^x"}, {"set", "policy", "p", "^x", "not json"}, {"add", "bogus", "x"}, {"clear"}, {"declare", "queue"}} {
		if _, err := ctl(t, url, args...); !errors.As(err, &u) {
			t.Errorf("warrenctl %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}

// Health checks: each passes on a healthy node and fails (exit status 1, the reason and
// details printed) when its condition does not hold.
func TestWarrenctl_Checks(t *testing.T) {
	log := zerolog.New(zerolog.NewTestWriter(t))
	b, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:0", DataDir: t.TempDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	m := mgmt.New(mgmt.Config{Broker: b, Log: log, SampleInterval: time.Second})
	hs := httptest.NewServer(m)
	defer func() { hs.Close(); m.Close(); b.Close() }()
	url := hs.URL
	port := strconv.Itoa(b.Addr().(*net.TCPAddr).Port)
	for args, want := range map[string]string{
		"check running":                           "is running",
		"check local-alarms":                      "no local alarms",
		"check alarms":                            "no alarms",
		"check virtual-hosts":                     "all virtual hosts",
		"check port-listener " + port:             "port " + port,
		"check protocol-listener amqp091":         "protocol amqp",
		"check port-connectivity":                 "connected to the node's listeners on ports",
		"check certificate-expiration --within 1": "no certificate expires within 1 weeks",
		"check quorum-critical":                   "single node cluster",
	} {
		if out := mustCtl(t, url, strings.Fields(args)...); !strings.Contains(out, want) {
			t.Errorf("warrenctl %s: %q, want %q", args, out, want)
		}
	}
	var cf *checkFailed
	out, err := ctl(t, url, "check", "port-listener", "1")
	if !errors.As(err, &cf) || cf.reason != "No active listener" || !strings.Contains(out, `"missing": 1`) {
		t.Fatalf("check port-listener 1: %v\n%s", err, out)
	}
	b.SetAlarmLimits(0, 1<<62) // no disk has that much free space
	out, err = ctl(t, url, "check", "local-alarms")
	if !errors.As(err, &cf) || cf.reason != "There are alarms in effect on the node" || !strings.Contains(out, "disk space") {
		t.Fatalf("check local-alarms with a disk alarm: %v\n%s", err, out)
	}
	b.SetAlarmLimits(0, 0)
	var ae *apiError
	if _, err := ctl(t, url, "check", "certificate-expiration", "--unit", "fortnights"); !errors.As(err, &ae) || ae.Status != 400 {
		t.Fatalf("a bad unit: %v, want HTTP 400", err)
	}
	hs.Close()
	if _, err := ctl(t, url, "check", "running"); !errors.As(err, &cf) {
		t.Fatalf("check running against a stopped node: %v", err)
	}
}

// Help for each command names its rabbitmqctl counterpart; shell completion scripts and
// dynamic completion of queue names work.
func TestWarrenctl_HelpAndCompletion(t *testing.T) {
	url := startNode(t)
	if out := mustCtl(t, url, "help", "set", "policy"); !strings.Contains(out, "set_policy") || !strings.Contains(out, "--apply-to") {
		t.Fatalf("help set policy:\n%s", out)
	}
	if out := mustCtl(t, url, "list", "--help"); !strings.Contains(out, "topic-permissions") {
		t.Fatalf("list --help:\n%s", out)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out := mustCtl(t, url, "completion", sh); !strings.Contains(out, "warrenctl") {
			t.Fatalf("completion %s:\n%.200s", sh, out)
		}
	}
	mustCtl(t, url, "declare", "queue", "completes-me")
	if out := mustCtl(t, url, "__complete", "delete", "queue", ""); !strings.Contains(out, "completes-me") {
		t.Fatalf("completing a queue name:\n%s", out)
	}
}
