package main

import (
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"
)

// paddedInt64 keeps hot counters on their own cache line so producers and
// consumers running on different cores do not false-share.
type paddedInt64 struct {
	atomic.Int64
	_ [56]byte
}

// Counters are the live, concurrently updated run counters.
type Counters struct {
	Published paddedInt64 // basic.publish calls that succeeded
	Confirmed paddedInt64 // publisher confirms: acks
	Nacked    paddedInt64 // publisher confirms: nacks
	Received  paddedInt64 // deliveries handed to consumers
	Stale     paddedInt64 // deliveries without a usable timestamp from this run
	Latency   LatencySet
}

// Counts is a point-in-time copy of the counters.
type Counts struct {
	Published int64
	Confirmed int64
	Nacked    int64
	Received  int64
}

// Snapshot reads all counters.
func (c *Counters) Snapshot() Counts {
	return Counts{
		Published: c.Published.Load(),
		Confirmed: c.Confirmed.Load(),
		Nacked:    c.Nacked.Load(),
		Received:  c.Received.Load(),
	}
}

// Sub returns a-b field by field.
func (a Counts) Sub(b Counts) Counts {
	return Counts{
		Published: a.Published - b.Published,
		Confirmed: a.Confirmed - b.Confirmed,
		Nacked:    a.Nacked - b.Nacked,
		Received:  a.Received - b.Received,
	}
}

// Rates are per-second rates over some interval.
type Rates struct {
	Sent      float64
	Confirmed float64
	Nacked    float64
	Received  float64
}

// RatesOver turns a count delta over d into per-second rates (zero for d <= 0).
func RatesOver(delta Counts, d time.Duration) Rates {
	s := d.Seconds()
	if s <= 0 {
		return Rates{}
	}
	return Rates{
		Sent:      float64(delta.Published) / s,
		Confirmed: float64(delta.Confirmed) / s,
		Nacked:    float64(delta.Nacked) / s,
		Received:  float64(delta.Received) / s,
	}
}

// Interval tracks the previous snapshot for per-second progress lines and
// accumulates the per-interval latency histograms into a whole-run one.
type Interval struct {
	start    time.Time
	lastTime time.Time
	first    Counts
	last     Counts
	sec      Histogram // latencies of the current interval
	Total    Histogram // latencies of the whole run
}

// NewInterval starts interval tracking at now with baseline counts.
func NewInterval(now time.Time, base Counts) *Interval {
	return &Interval{start: now, lastTime: now, first: base, last: base}
}

// base returns the baseline counts the interval tracking started from.
func (iv *Interval) base() Counts { return iv.first }

// Tick closes the current interval at now: it returns the interval's rates
// and its latency histogram (valid until the next Tick), and merges the
// latencies into Total.
func (iv *Interval) Tick(now time.Time, cur Counts, lat *LatencySet) (elapsed time.Duration, r Rates, sec *Histogram) {
	r = RatesOver(cur.Sub(iv.last), now.Sub(iv.lastTime))
	lat.DrainInto(&iv.sec)
	iv.Total.Merge(&iv.sec)
	iv.last, iv.lastTime = cur, now
	return now.Sub(iv.start), r, &iv.sec
}

// FormatProgress renders one progress line.
func FormatProgress(elapsed time.Duration, r Rates, confirms bool, lat *Histogram) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs  sent %s/s", elapsed.Seconds(), fmtRate(r.Sent))
	if confirms {
		fmt.Fprintf(&b, "  confirmed %s/s", fmtRate(r.Confirmed))
		if r.Nacked > 0 {
			fmt.Fprintf(&b, "  nacked %s/s", fmtRate(r.Nacked))
		}
	}
	fmt.Fprintf(&b, "  received %s/s", fmtRate(r.Received))
	if lat.Count() > 0 {
		fmt.Fprintf(&b, "  latency p50 %s p99 %s", fmtLat(lat.Quantile(0.50)), fmtLat(lat.Quantile(0.99)))
	} else {
		b.WriteString("  latency -")
	}
	return b.String()
}

func fmtRate(v float64) string { return fmt.Sprintf("%8.0f", v) }

// fmtLat renders nanoseconds in a human unit.
func fmtLat(ns int64) string {
	switch {
	case ns < int64(time.Millisecond):
		return fmt.Sprintf("%.0fµs", float64(ns)/1e3)
	case ns < int64(time.Second):
		return fmt.Sprintf("%.2fms", float64(ns)/1e6)
	default:
		return fmt.Sprintf("%.2fs", float64(ns)/1e9)
	}
}

// LatencySummary holds whole-run latency statistics in microseconds.
type LatencySummary struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min_us"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P95   float64 `json:"p95_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p99_9_us"`
	Max   float64 `json:"max_us"`
}

// SummarizeLatency extracts the reported percentiles from h.
func SummarizeLatency(h *Histogram) LatencySummary {
	return LatencySummary{
		Count: h.Count(),
		Min:   durUs(h.Min()),
		Mean:  math.Round(h.Mean()/100) / 10,
		P50:   durUs(h.Quantile(0.50)),
		P95:   durUs(h.Quantile(0.95)),
		P99:   durUs(h.Quantile(0.99)),
		P999:  durUs(h.Quantile(0.999)),
		Max:   durUs(h.Max()),
	}
}

// CPUSummary describes the CPU used by one process during the measurement.
type CPUSummary struct {
	Seconds float64 `json:"cpu_seconds"`
	Cores   float64 `json:"cores"`
}

// BrokerSummary is reported when --pid is given.
type BrokerSummary struct {
	PID              int     `json:"pid"`
	CPUSummary               // broker CPU over the measurement window
	SentPerCore      float64 `json:"sent_per_core"`     // sent msg/s per broker core
	ReceivedPerCore  float64 `json:"received_per_core"` // received msg/s per broker core
	RSSStartKiB      int64   `json:"rss_start_kib"`
	RSSEndKiB        int64   `json:"rss_end_kib"`
	MsgPerCoreSecond float64 `json:"msgs_per_core"` // (sent+received) msg/s per broker core
}

// HostSummary is the machine-wide CPU use over the measurement window, to
// tell whether other processes competed with the tool and the broker.
type HostSummary struct {
	BusyCores  float64 `json:"busy_cores"`  // all processes
	OtherCores float64 `json:"other_cores"` // busy minus tool minus broker (if --pid)
}

// HostUsage derives HostSummary from the host's busy CPU cores and the
// cores used by the tool and the broker (0 when unknown).
func HostUsage(busyCores, toolCores, brokerCores float64) HostSummary {
	other := busyCores - toolCores - brokerCores
	if other < 0 {
		other = 0
	}
	return HostSummary{BusyCores: round3(busyCores), OtherCores: round3(other)}
}

// Summary is the final report of a load run.
type Summary struct {
	Config    SummaryConfig  `json:"config"`
	Seconds   float64        `json:"seconds"`
	Sent      int64          `json:"sent"`
	Confirmed int64          `json:"confirmed"`
	Nacked    int64          `json:"nacked"`
	Received  int64          `json:"received"`
	SentRate  float64        `json:"sent_per_s"`
	ConfRate  float64        `json:"confirmed_per_s"`
	RecvRate  float64        `json:"received_per_s"`
	Latency   LatencySummary `json:"latency"`
	Tool      CPUSummary     `json:"tool_cpu"`
	Broker    *BrokerSummary `json:"broker,omitempty"`
	Host      *HostSummary   `json:"host,omitempty"`
	Errors    []string       `json:"errors,omitempty"`
}

// SummaryConfig echoes the parameters of the run.
type SummaryConfig struct {
	Producers    int    `json:"producers"`
	Consumers    int    `json:"consumers"`
	Queues       int    `json:"queues"`
	ExchangeType string `json:"exchange_type"`
	Size         int    `json:"size"`
	Rate         int    `json:"rate"`
	Confirm      int    `json:"confirm"`
	AutoAck      bool   `json:"autoack"`
	Prefetch     int    `json:"prefetch"`
	MultipleAck  int    `json:"multiple_ack"`
	Persistent   bool   `json:"persistent"`
	Durable      bool   `json:"durable"`
}

// BuildSummary assembles the final report from the counts and latency over
// the measured window, and optional broker CPU figures.
func BuildSummary(cfg SummaryConfig, total Counts, window time.Duration, lat *Histogram) Summary {
	r := RatesOver(total, window)
	return Summary{
		Config:    cfg,
		Seconds:   round3(window.Seconds()),
		Sent:      total.Published,
		Confirmed: total.Confirmed,
		Nacked:    total.Nacked,
		Received:  total.Received,
		SentRate:  round1(r.Sent),
		ConfRate:  round1(r.Confirmed),
		RecvRate:  round1(r.Received),
		Latency:   SummarizeLatency(lat),
	}
}

// PerCore divides a rate by a number of cores (0 when cores is ~0).
func PerCore(rate, cores float64) float64 {
	if cores < 1e-3 {
		return 0
	}
	return round1(rate / cores)
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// FormatSummary renders the summary for humans.
func FormatSummary(s Summary) string {
	var b strings.Builder
	c := s.Config
	fmt.Fprintf(&b, "summary: %d producer(s), %d consumer(s), %d queue(s), exchange %s, %d B",
		c.Producers, c.Consumers, c.Queues, c.ExchangeType, c.Size)
	if c.Rate > 0 {
		fmt.Fprintf(&b, ", rate %d/s per producer", c.Rate)
	}
	if c.Confirm > 0 {
		fmt.Fprintf(&b, ", confirm %d", c.Confirm)
	}
	if c.AutoAck {
		b.WriteString(", autoack")
	} else if c.Consumers > 0 {
		fmt.Fprintf(&b, ", manual ack (multiple every %d), prefetch %d", c.MultipleAck, c.Prefetch)
	}
	if c.Persistent {
		b.WriteString(", persistent")
	}
	if c.Durable {
		b.WriteString(", durable")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  window      %.3fs\n", s.Seconds)
	fmt.Fprintf(&b, "  sent        %d (%.0f msg/s)\n", s.Sent, s.SentRate)
	if c.Confirm > 0 {
		fmt.Fprintf(&b, "  confirmed   %d (%.0f msg/s), nacked %d\n", s.Confirmed, s.ConfRate, s.Nacked)
	}
	fmt.Fprintf(&b, "  received    %d (%.0f msg/s)\n", s.Received, s.RecvRate)
	l := s.Latency
	if l.Count > 0 {
		fmt.Fprintf(&b, "  latency     n=%d min %s mean %s p50 %s p95 %s p99 %s p99.9 %s max %s\n",
			l.Count, usStr(l.Min), usStr(l.Mean), usStr(l.P50), usStr(l.P95), usStr(l.P99), usStr(l.P999), usStr(l.Max))
	} else {
		b.WriteString("  latency     -\n")
	}
	fmt.Fprintf(&b, "  tool CPU    %.2fs (%.2f cores)\n", s.Tool.Seconds, s.Tool.Cores)
	if br := s.Broker; br != nil {
		fmt.Fprintf(&b, "  broker CPU  %.2fs (%.2f cores), pid %d\n", br.Seconds, br.Cores, br.PID)
		fmt.Fprintf(&b, "  per broker core: sent %.0f msg/s, received %.0f msg/s, sent+received %.0f msg/s\n",
			br.SentPerCore, br.ReceivedPerCore, br.MsgPerCoreSecond)
		fmt.Fprintf(&b, "  broker RSS  %d KiB -> %d KiB\n", br.RSSStartKiB, br.RSSEndKiB)
	}
	if h := s.Host; h != nil {
		fmt.Fprintf(&b, "  host CPU    %.2f cores busy, of which %.2f by other processes", h.BusyCores, h.OtherCores)
		if s.Broker == nil {
			b.WriteString(" (including the broker: no --pid)")
		}
		b.WriteString("\n")
	}
	for _, e := range s.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	return b.String()
}

func usStr(us float64) string { return fmtLat(int64(us * 1e3)) }
