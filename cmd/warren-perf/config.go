package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Config holds the command-line options.
type Config struct {
	URL          string
	ConsumerURL  string // consumers connect here (default URL): another node of a cluster
	SetupURL     string // queues are declared here (default URL): the node they live on
	Producers    int
	Consumers    int
	Queues       int
	ExchangeType string
	Size         int
	Rate         int
	Confirm      int
	AutoAck      bool
	Prefetch     int
	MultipleAck  int
	Persistent   bool
	Durable      bool
	QueueType    string // x-queue-type of the declared queues ("" classic)
	QueueArgs    string // more declare arguments: k=v,k=v (integers as numbers)
	Duration     time.Duration
	JSON         bool
	PID          int
	Keep         bool
	QueuePrefix  string

	IdleQueues      int
	IdleConnections int
	IdleParallel    int
	IdleSettle      time.Duration
	IdleNoWait      bool

	CPUProfile string

	// Timeout is the hard limit on the whole process; 0 = derived.
	Timeout time.Duration
}

const fanoutExchange = "perf-fanout"

// parseConfig parses args (without the program name).
func parseConfig(args []string, stderr io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("warren-perf", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "amqp://guest:guest@127.0.0.1:5672/", "AMQP 0-9-1 URL of the broker")
	fs.StringVar(&c.ConsumerURL, "consumer-url", "", "AMQP URL the consumers connect to (default --url): another node of a cluster")
	fs.StringVar(&c.SetupURL, "setup-url", "", "AMQP URL the queues are declared (and deleted) through (default --url): in a cluster, the node they live on")
	fs.IntVar(&c.Producers, "producers", 1, "number of producers (one connection each)")
	fs.IntVar(&c.Consumers, "consumers", 1, "number of consumers (one connection each)")
	fs.IntVar(&c.Queues, "queues", 1, "number of queues (perf-q-0..N-1); producers and consumers are spread round-robin")
	fs.StringVar(&c.ExchangeType, "exchange-type", "direct", "direct (default exchange, routing key = queue) or fanout (exchange perf-fanout bound to all queues)")
	fs.IntVar(&c.Size, "size", 16, "message body size in bytes")
	fs.IntVar(&c.Rate, "rate", 0, "publish rate limit in msg/s per producer (0 = unlimited)")
	fs.IntVar(&c.Confirm, "confirm", 0, "publisher confirms with at most N unconfirmed messages in flight per producer (0 = off)")
	fs.BoolVar(&c.AutoAck, "autoack", false, "consume with automatic acknowledgement (no-ack)")
	fs.IntVar(&c.Prefetch, "prefetch", 0, "consumer prefetch count (basic.qos; 0 = unlimited)")
	fs.IntVar(&c.MultipleAck, "multiple-ack", 1, "manual ack: ack with multiple=true every N messages")
	fs.BoolVar(&c.Persistent, "persistent", false, "publish persistent messages (delivery-mode 2)")
	fs.BoolVar(&c.Durable, "durable", false, "declare durable queues (and exchange)")
	fs.StringVar(&c.QueueType, "queue-type", "", "x-queue-type of the declared queues: classic (default), quorum (durable implied) or stream")
	fs.StringVar(&c.QueueArgs, "queue-args", "", "more queue.declare arguments, k=v,k=v (numbers become integers), e.g. x-warren-replication=async,x-quorum-initial-group-size=3")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measurement duration")
	fs.BoolVar(&c.JSON, "json", false, "print the final summary as JSON on stdout (progress goes to stderr)")
	fs.IntVar(&c.PID, "pid", 0, "broker process id: report broker CPU (and RSS) from /proc/PID")
	fs.BoolVar(&c.Keep, "keep", false, "do not delete the declared queues/exchange at the end")
	fs.StringVar(&c.QueuePrefix, "queue-prefix", "perf-q-", "queue name prefix")
	fs.IntVar(&c.IdleQueues, "idle-queues", 0, "memory scenario: declare N idle queues, report time and broker RSS growth, then exit")
	fs.IntVar(&c.IdleConnections, "idle-connections", 0, "memory scenario: open N idle connections (one channel each), report time and broker RSS growth, then exit")
	fs.IntVar(&c.IdleParallel, "idle-parallel", 1, "memory scenarios: number of concurrent workers creating queues/connections")
	fs.DurationVar(&c.IdleSettle, "idle-settle", 2*time.Second, "memory scenarios: wait this long before sampling the broker RSS after creation")
	fs.BoolVar(&c.IdleNoWait, "idle-nowait", false, "--idle-queues: declare with nowait, then one waiting declare per channel (the time includes it)")
	fs.DurationVar(&c.Timeout, "timeout", 0, "hard limit for the whole run, after which the tool exits (0 = duration+60s, or 15m for memory scenarios)")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the tool itself to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	switch {
	case c.Producers < 0 || c.Consumers < 0 || c.Queues < 0:
		return errors.New("--producers, --consumers and --queues must be >= 0")
	case c.Size < 0:
		return errors.New("--size must be >= 0")
	case c.Rate < 0 || c.Confirm < 0 || c.Prefetch < 0:
		return errors.New("--rate, --confirm and --prefetch must be >= 0")
	case c.Prefetch > 65535:
		return errors.New("--prefetch must be <= 65535")
	case c.MultipleAck < 1:
		return errors.New("--multiple-ack must be >= 1")
	case !c.AutoAck && c.Prefetch > 0 && c.MultipleAck > c.Prefetch:
		return errors.New("--multiple-ack must be <= --prefetch, or consumers would stall waiting for deliveries the broker will not send")
	case c.Duration <= 0:
		return errors.New("--duration must be > 0")
	case c.ExchangeType != "direct" && c.ExchangeType != "fanout":
		return fmt.Errorf("--exchange-type %q: want direct or fanout", c.ExchangeType)
	case c.IdleQueues < 0 || c.IdleConnections < 0:
		return errors.New("--idle-queues and --idle-connections must be >= 0")
	case c.IdleQueues > 0 && c.IdleConnections > 0:
		return errors.New("use only one of --idle-queues and --idle-connections per run")
	case c.IdleParallel < 1:
		return errors.New("--idle-parallel must be >= 1")
	case c.PID < 0:
		return errors.New("--pid must be >= 0")
	case c.Timeout < 0:
		return errors.New("--timeout must be >= 0")
	}
	if c.IdleQueues == 0 && c.IdleConnections == 0 && (c.Producers > 0 || c.Consumers > 0) && c.Queues == 0 {
		return errors.New("--queues must be >= 1 when there are producers or consumers")
	}
	return nil
}

// idleMode reports whether this is a memory scenario run.
func (c *Config) idleMode() bool { return c.IdleQueues > 0 || c.IdleConnections > 0 }

// hardTimeout is the watchdog limit for the whole process.
func (c *Config) hardTimeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	if c.idleMode() {
		return 15 * time.Minute
	}
	return c.Duration + 60*time.Second
}

// queueName is the name of the i-th load queue.
func (c *Config) queueName(i int) string { return c.QueuePrefix + strconv.Itoa(i) }

// queueFor spreads producers/consumers round-robin over the queues.
func (c *Config) queueFor(i int) string { return c.queueName(i % c.Queues) }

func (c *Config) consumerURL() string {
	if c.ConsumerURL != "" {
		return c.ConsumerURL
	}
	return c.URL
}

func (c *Config) setupURL() string {
	if c.SetupURL != "" {
		return c.SetupURL
	}
	return c.URL
}

// pidString is the /proc path component of --pid ("" when unset).
func (c *Config) pidString() string {
	if c.PID <= 0 {
		return ""
	}
	return strconv.Itoa(c.PID)
}

func (c *Config) summaryConfig() SummaryConfig {
	return SummaryConfig{
		Producers: c.Producers, Consumers: c.Consumers, Queues: c.Queues,
		ExchangeType: c.ExchangeType, Size: c.Size, Rate: c.Rate, Confirm: c.Confirm,
		AutoAck: c.AutoAck, Prefetch: c.Prefetch, MultipleAck: c.MultipleAck,
		Persistent: c.Persistent, Durable: c.Durable,
	}
}
