package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestRatesOver(t *testing.T) {
	r := RatesOver(Counts{Published: 2000, Confirmed: 1000, Nacked: 10, Received: 500}, 2*time.Second)
	if r.Sent != 1000 || r.Confirmed != 500 || r.Nacked != 5 || r.Received != 250 {
		t.Fatalf("rates %+v", r)
	}
	if (RatesOver(Counts{Published: 5}, 0) != Rates{}) {
		t.Fatal("zero duration should give zero rates")
	}
}

func TestIntervalTicks(t *testing.T) {
	var c Counters
	t0 := time.Unix(100, 0)
	c.Published.Add(7) // before the start: excluded by the baseline
	iv := NewInterval(t0, c.Snapshot())

	c.Published.Add(1000)
	c.Received.Add(900)
	rec := c.Latency.NewRecorder()
	rec.Record(int64(time.Millisecond))
	rec.Record(int64(3 * time.Millisecond))
	el, r, sec := iv.Tick(t0.Add(time.Second), c.Snapshot(), &c.Latency)
	if el != time.Second || r.Sent != 1000 || r.Received != 900 {
		t.Fatalf("tick 1: %s %+v", el, r)
	}
	if sec.Count() != 2 {
		t.Fatalf("tick 1 latency count %d", sec.Count())
	}

	c.Published.Add(500)
	rec.Record(int64(2 * time.Millisecond))
	el, r, sec = iv.Tick(t0.Add(1500*time.Millisecond), c.Snapshot(), &c.Latency)
	if el != 1500*time.Millisecond || r.Sent != 1000 || r.Received != 0 {
		t.Fatalf("tick 2: %s %+v", el, r)
	}
	if sec.Count() != 1 || iv.Total.Count() != 3 {
		t.Fatalf("latency counts %d/%d", sec.Count(), iv.Total.Count())
	}
	total := c.Snapshot().Sub(iv.base())
	if total.Published != 1500 || total.Received != 900 {
		t.Fatalf("total %+v", total)
	}
}

func TestFormatProgress(t *testing.T) {
	var h Histogram
	h.Record(500_000)
	h.Record(2_000_000)
	line := FormatProgress(3*time.Second, Rates{Sent: 1234, Confirmed: 1200, Received: 1100}, true, &h)
	for _, want := range []string{"3.0s", "sent", "1234/s", "confirmed", "1200/s", "received", "1100/s", "p50 50", "p99 2.00ms"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
	var empty Histogram
	if line := FormatProgress(time.Second, Rates{}, false, &empty); strings.Contains(line, "confirmed") || !strings.Contains(line, "latency -") {
		t.Errorf("line without confirms/latency: %q", line)
	}
}

func TestBuildSummaryAndJSON(t *testing.T) {
	var h Histogram
	for i := int64(1); i <= 1000; i++ {
		h.Record(i * 1000) // 1µs..1ms
	}
	s := BuildSummary(SummaryConfig{Producers: 1, Consumers: 1, Queues: 1, ExchangeType: "direct", Size: 16, MultipleAck: 1},
		Counts{Published: 10000, Confirmed: 9000, Received: 8000}, 10*time.Second, &h)
	if s.SentRate != 1000 || s.ConfRate != 900 || s.RecvRate != 800 || s.Seconds != 10 {
		t.Fatalf("summary rates %+v", s)
	}
	if s.Latency.Count != 1000 || s.Latency.P50 < 495 || s.Latency.P50 > 505 || s.Latency.P999 < 990 || s.Latency.Max != 1000 {
		t.Fatalf("latency %+v", s.Latency)
	}
	s.Broker = &BrokerSummary{PID: 42, CPUSummary: CPUSummary{Seconds: 5, Cores: 0.5}, SentPerCore: PerCore(s.SentRate, 0.5)}
	if s.Broker.SentPerCore != 2000 {
		t.Fatalf("per core %v", s.Broker.SentPerCore)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sent_per_s", "received_per_s", "latency", "tool_cpu", "broker"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	txt := FormatSummary(s)
	for _, want := range []string{"sent        10000 (1000 msg/s)", "received    8000", "p99.9", "broker CPU", "tool CPU"} {
		if !strings.Contains(txt, want) {
			t.Errorf("summary text lacks %q:\n%s", want, txt)
		}
	}
	if PerCore(100, 0) != 0 {
		t.Fatal("PerCore with no CPU")
	}
}

func TestRSSGrowth(t *testing.T) {
	g, per := RSSGrowth(100000, 110000, 1000)
	if g != 10000 || per != 10240 {
		t.Fatalf("growth %d per %v", g, per)
	}
	if _, per := RSSGrowth(1, 2, 0); per != 0 {
		t.Fatal("no items")
	}
	txt := FormatIdle(IdleSummary{Scenario: "idle-queues", Requested: 10, Created: 10, Seconds: 1, PerSecond: 10,
		Broker: &IdleBroker{PID: 1, RSSBeforeKiB: 1, RSSAfterKiB: 11, GrowthKiB: 10, BytesPerItem: 1024}})
	if !strings.Contains(txt, "created     10 of 10 queues") || !strings.Contains(txt, "1024 bytes per queue") {
		t.Fatalf("idle summary:\n%s", txt)
	}
}

func TestStampAndSendTime(t *testing.T) {
	const ts = int64(1_700_000_000_123_456_789)
	for _, size := range []int{0, 1, 7, 8, 16, 1024} {
		msg := amqp.Publishing{Body: newBody(size)}
		stamp(&msg, ts)
		got, ok := sendTime(msg.Body, msg.Headers)
		if !ok || got != ts {
			t.Fatalf("size %d: got %d ok=%v", size, got, ok)
		}
		if len(msg.Body) != size {
			t.Fatalf("size %d: body became %d bytes", size, len(msg.Body))
		}
		if size >= 8 && msg.Headers != nil {
			t.Fatalf("size %d: unexpected header", size)
		}
	}
	if _, ok := sendTime([]byte{1, 2}, nil); ok {
		t.Fatal("no timestamp should not be ok")
	}
	if _, ok := sendTime(make([]byte, 8), nil); ok {
		t.Fatal("zero timestamp should not be ok")
	}
}

func TestParseStat(t *testing.T) {
	// comm with spaces and a ')' inside, as the kernel allows.
	stat := "2516 (beam.smp (x) y) S 1 2516 2516 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 20 0 3000 1000000 30000 18446744073709551615"
	d, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := (1234 + 567) * 10 * time.Millisecond; d != want {
		t.Fatalf("cpu %s want %s", d, want)
	}
	if _, err := parseStatCPU("12 (x) S 1 2"); err == nil {
		t.Fatal("short stat should fail")
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Fatal("garbage should fail")
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tbeam.smp\nVmPeak:\t 999 kB\nVmRSS:\t  133936 kB\nThreads:\t20\n"
	kb, err := parseStatusRSS(status)
	if err != nil || kb != 133936 {
		t.Fatalf("rss %d err %v", kb, err)
	}
	if _, err := parseStatusRSS("Name:\tx\n"); err == nil {
		t.Fatal("missing VmRSS should fail")
	}
}

func TestProcSelf(t *testing.T) {
	a := sampleCPU("self")
	x := 0
	for i := 0; i < 20_000_000; i++ {
		x += i ^ (x >> 3)
	}
	_ = x
	b := sampleCPU("self")
	if !a.ok || !b.ok {
		t.Skip("/proc not available")
	}
	s, cores, ok := cpuUsage(a, b)
	if !ok || s < 0 || cores < 0 {
		t.Fatalf("cpu usage %v %v %v", s, cores, ok)
	}
	if _, err := procRSS("self"); err != nil {
		t.Fatal(err)
	}
}

func TestParseConfig(t *testing.T) {
	var errb bytes.Buffer
	c, err := parseConfig(nil, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "amqp://guest:guest@127.0.0.1:5672/" || c.Producers != 1 || c.Consumers != 1 || c.Queues != 1 ||
		c.Size != 16 || c.Duration != 10*time.Second || c.MultipleAck != 1 || c.ExchangeType != "direct" {
		t.Fatalf("defaults %+v", c)
	}
	if c.hardTimeout() != 70*time.Second {
		t.Fatalf("hard timeout %s", c.hardTimeout())
	}
	c, err = parseConfig([]string{"--queues", "3", "--producers", "4", "--exchange-type", "fanout"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{c.queueFor(0), c.queueFor(1), c.queueFor(2), c.queueFor(3)}; strings.Join(got, ",") != "perf-q-0,perf-q-1,perf-q-2,perf-q-0" {
		t.Fatalf("round robin %v", got)
	}
	bad := [][]string{
		{"--exchange-type", "topic"},
		{"--multiple-ack", "50", "--prefetch", "10"},
		{"--multiple-ack", "0"},
		{"--queues", "0"},
		{"--duration", "0s"},
		{"--idle-queues", "5", "--idle-connections", "5"},
		{"--size", "-1"},
		{"stray"},
	}
	for _, args := range bad {
		if _, err := parseConfig(args, &errb); err == nil {
			t.Errorf("%v: expected an error", args)
		}
	}
	// autoack ignores the multiple-ack/prefetch relation
	if _, err := parseConfig([]string{"--autoack", "--multiple-ack", "50", "--prefetch", "10"}, &errb); err != nil {
		t.Errorf("autoack: %v", err)
	}
	c, _ = parseConfig([]string{"--idle-queues", "10"}, &errb)
	if !c.idleMode() || c.hardTimeout() != 15*time.Minute {
		t.Fatal("idle mode timeout")
	}
}

func TestRedactURL(t *testing.T) {
	if got := redactURL("amqp://user:secret@host:5672/vh"); strings.Contains(got, "secret") {
		t.Fatalf("password leaked: %s", got)
	}
}

func TestErrorLogDedup(t *testing.T) {
	var out bytes.Buffer
	e := newErrorLog(&out)
	e.add("boom %d", 1)
	e.add("boom %d", 1)
	e.add("other")
	all := e.all()
	if len(all) != 2 || all[0] != "boom 1 (x2)" || all[1] != "other" {
		t.Fatalf("errors %v", all)
	}
	if strings.Count(out.String(), "boom") != 1 {
		t.Fatalf("duplicate printed: %q", out.String())
	}
}

func TestCreationTime(t *testing.T) {
	t0 := time.Unix(100, 0)
	end := t0.Add(12 * time.Second)
	last := t0.Add(2 * time.Second).UnixNano()
	if d := creationTime(t0, end, last, false); d != 12*time.Second {
		t.Fatalf("ok run: %s", d)
	}
	if d := creationTime(t0, end, last, true); d != 2*time.Second {
		t.Fatalf("failed run should stop at the last success: %s", d)
	}
	if d := creationTime(t0, end, 0, true); d != 0 {
		t.Fatalf("nothing created: %s", d)
	}
}

func TestParseHostBusy(t *testing.T) {
	stat := "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nintr 1 2 3\n"
	d, err := parseHostBusy(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(100+5+50+3+2+1) * 10 * time.Millisecond; d != want {
		t.Fatalf("busy %s want %s", d, want)
	}
	if _, err := parseHostBusy("intr 1\n"); err == nil {
		t.Fatal("no cpu line should fail")
	}
	h := HostUsage(1.9, 0.7, 1.1)
	if h.BusyCores != 1.9 || math.Abs(h.OtherCores-0.1) > 1e-9 {
		t.Fatalf("host %+v", h)
	}
	if HostUsage(0.5, 0.4, 0.3).OtherCores != 0 {
		t.Fatal("negative other")
	}
}
