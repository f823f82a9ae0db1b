package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
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
