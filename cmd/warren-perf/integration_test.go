package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests drive the whole tool against a live AMQP 0-9-1 broker. They
// run only when WARREN_PERF_URL is set, e.g.
//
//	WARREN_PERF_URL=amqp://guest:guest@127.0.0.1:5672/ go test ./cmd/warren-perf/
func brokerURL(t *testing.T) string {
	u := os.Getenv("WARREN_PERF_URL")
	if u == "" {
		t.Skip("WARREN_PERF_URL not set; skipping broker test")
	}
	return u
}

func runJSON(t *testing.T, v any, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	start := time.Now()
	if rc := run(append(args, "--json"), &out, &errb); rc != 0 {
		t.Fatalf("%v: exit %d\nstdout:%s\nstderr:%s", args, rc, out.String(), errb.String())
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		t.Fatalf("%v: bad JSON %v:\n%s", args, err, out.String())
	}
	t.Logf("%v took %s", args, time.Since(start))
	return errb.String()
}

func TestBrokerLoad(t *testing.T) {
	url := brokerURL(t)
	cases := [][]string{
		{"--rate", "2000", "--autoack"},
		{"--rate", "2000", "--prefetch", "100", "--multiple-ack", "50"},
		{"--rate", "500", "--size", "4", "--confirm", "32", "--persistent", "--durable", "--queue-prefix", "perf-it-d-"},
		{"--rate", "500", "--exchange-type", "fanout", "--queues", "3", "--consumers", "3"},
	}
	for _, c := range cases {
		var s Summary
		args := []string{"--url", url, "--duration", "2s", "--pid", strconv.Itoa(os.Getpid())}
		progress := runJSON(t, &s, append(args, c...)...)
		if s.Sent < 500 || s.Received < s.Sent/2 || s.Latency.Count == 0 {
			t.Errorf("%v: summary %+v", c, s)
		}
		if s.Broker == nil || s.Broker.Seconds <= 0 {
			t.Errorf("%v: no --pid CPU figures", c)
		}
		if s.Config.Confirm > 0 && s.Confirmed == 0 {
			t.Errorf("%v: no confirms", c)
		}
		if s.Config.ExchangeType == "fanout" && s.Received < 2*s.Sent {
			t.Errorf("%v: fanout delivered %d for %d sent", c, s.Received, s.Sent)
		}
		if !strings.Contains(progress, "1.0s  sent") {
			t.Errorf("%v: no progress line in %q", c, progress)
		}
	}
}

func TestBrokerIdle(t *testing.T) {
	url := brokerURL(t)
	var q IdleSummary
	runJSON(t, &q, "--url", url, "--idle-queues", "50", "--idle-parallel", "2", "--idle-settle", "0s")
	if q.Created != 50 || q.Scenario != "idle-queues" {
		t.Errorf("idle queues %+v", q)
	}
	var c IdleSummary
	runJSON(t, &c, "--url", url, "--idle-connections", "20", "--idle-settle", "0s")
	if c.Created != 20 {
		t.Errorf("idle connections %+v", c)
	}
}
