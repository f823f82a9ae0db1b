package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/peterbourgon/ff/v3"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/wal"
)

// envPrefix starts the environment variable of each flag: WARREN_ + the flag name in upper
// case with "_" for "-" (--disk-free-limit is WARREN_DISK_FREE_LIMIT).
const envPrefix = "WARREN"

// config is everything a node is configured with: the broker's Config (its defaults from
// broker.DefaultConfig) and what cmd/warren wires around the broker.
type config struct {
	broker.Config

	configFile       string
	httpListen       string
	prometheusListen string
	corsOrigins      string
	logLevel         string
	logJSON          bool
	addrFile         string
	segmentSize      int
	cpuProfile       string
	memProfile       string

	sec *securityFlags   // security.go
	enc *encryptionFlags // encryption.go
	cl  *clusterFlags    // cluster.go
}

// defaultConfig is the configuration with no flag, variable or file.
func defaultConfig() *config {
	return &config{
		Config:           broker.DefaultConfig(),
		httpListen:       "127.0.0.1:15672",
		prometheusListen: "127.0.0.1:15692",
		logLevel:         "info",
		segmentSize:      wal.DefaultSegmentSize,
	}
}

// register defines every flag on fs, bound to c's fields, with c's values as defaults. The
// flag name is also the environment variable (WARREN_...) and the config file's key.
func (c *config) register(fs *flag.FlagSet) {
	b := &c.Config
	fs.StringVar(&c.configFile, "config", c.configFile, "config file (JSON; keys as the flag names)")
	fs.Bool("version", false, "print the version and exit (read on the command line only)")
	fs.StringVar(&b.AMQPListen, "amqp-listen", b.AMQPListen, "AMQP listen address")
	fs.StringVar(&c.httpListen, "http-listen", c.httpListen, "HTTP management listen address (empty: off)")
	fs.StringVar(&c.corsOrigins, "http-cors-origins", "", "comma-separated web origins allowed to call the HTTP API from other sites (CORS; \"*\": any; empty: none)")
	fs.StringVar(&c.prometheusListen, "prometheus-listen", c.prometheusListen, "Prometheus metrics listen address, /metrics as RabbitMQ's port 15692 serves it (empty: off)")
	fs.StringVar(&b.DataDir, "data-dir", b.DataDir, "data folder")
	fs.StringVar(&c.logLevel, "log-level", c.logLevel, "log level: trace, debug, info, warn, error")
	fs.BoolVar(&c.logJSON, "log-json", c.logJSON, "log JSON lines instead of console text")
	fs.StringVar(&c.addrFile, "addr-file", c.addrFile, "write the bound addresses as JSON {\"amqp\":...,\"http\":...} to this file")
	fs.Var(newSizeFlag(&b.MaxMessageSize, 1, broker.MaxMessageSizeLimit), "max-message-size", "largest accepted message body, a `size` in bytes (50000000, 50MB, 128MiB)")
	fs.Var(newSizeFlag(&c.segmentSize, 1, math.MaxInt32), "wal-segment-size", "`size` of a log segment; each busy queue keeps about two in memory")
	fs.Var(newSizeFlag(&b.MemoryBudget, 0, math.MaxInt64), "memory-budget", "`size` of the queued messages kept in memory node-wide before they wait on disk (default: a quarter of RAM; 0: the same)")
	fs.Var(newSizeFlag(&b.MaxQueueMemory, 0, math.MaxInt64), "max-queue-memory", "`size` of the queued messages one queue keeps in memory before the rest waits on disk (0: the default)")
	fs.Float64Var(&b.MemoryHighWatermark, "vm-memory-high-watermark", b.MemoryHighWatermark, "memory alarm above this fraction of RAM: publishers are blocked (negative: off)")
	fs.Var(newSizeFlag(&b.DiskFreeLimit, math.MinInt64, math.MaxInt64), "disk-free-limit", "disk alarm below this `size` free in --data-dir: 50000000, 50MB, 1GiB (negative: off)")
	fs.Var(uint16Flag{&b.Heartbeat}, "heartbeat", "heartbeat interval offered to clients, `seconds` (0: off)")
	fs.Var(newSizeFlag(&b.FrameMax, 4096, math.MaxUint32), "frame-max", "largest frame offered to clients, a `size` in bytes")
	fs.Var(uint16Flag{&b.ChannelMax}, "channel-max", "most channels per connection, a `number` from 1 to 65535")
	fs.StringVar(&b.DefaultUser, "default-user", b.DefaultUser, "initial user (guest may connect only from loopback)")
	fs.StringVar(&b.DefaultPass, "default-pass", b.DefaultPass, "initial user's password")
	c.sec = registerSecurityFlags(fs, b)
	c.enc = registerEncryptionFlags(fs)
	c.cl = registerClusterFlags(fs)
	fs.StringVar(&b.QueueMasterLocator, "queue-master-locator", b.QueueMasterLocator, "in a cluster, the node a new classic queue lives on when neither its x-queue-master-locator argument nor a policy says: client-local, min-masters or random (RabbitMQ's queue_master_locator)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", c.cpuProfile, "write a CPU profile to this file until shutdown (for performance work)")
	fs.StringVar(&c.memProfile, "memprofile", c.memProfile, "write a heap profile to this file at shutdown (for performance work)")
}

// loadConfig reads the configuration from args, then the environment, then the --config file
// (or WARREN_CONFIG): a setting given on the command line wins over its environment variable,
// which wins over the file. Every bad value is an error that names the setting and where it
// came from.
func loadConfig(args []string, usage io.Writer) (*config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("warren", flag.ContinueOnError)
	fs.SetOutput(usage)
	c.register(fs)
	// ff skips variables set to "": for a string setting that is a value (WARREN_HTTP_LISTEN=
	// turns the HTTP listener off), which must also win over the file.
	emptyEnv := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && v == "" && isString(f) {
			emptyEnv[f.Name], emptyEnv[envName(f.Name)] = true, true
		}
	})
	parser := func(r io.Reader, set func(name, value string) error) error {
		err := ff.JSONParser(r, func(name, value string) error {
			if emptyEnv[name] {
				return nil
			}
			return set(name, value)
		})
		if err != nil {
			return fmt.Errorf("config file %s: %w", c.configFile, err)
		}
		return nil
	}
	err := ff.Parse(fs, args,
		ff.WithEnvVarPrefix(envPrefix),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(parser))
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, flag.ErrHelp
		}
		return nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name := range emptyEnv {
		if f := fs.Lookup(name); f != nil && !given[name] {
			if err := f.Value.Set(""); err != nil {
				return nil, fmt.Errorf("%s: %w", envName(name), err)
			}
		}
	}
	c.NoHeartbeat = c.Heartbeat == 0
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// isString reports whether f holds a string.
func isString(f *flag.Flag) bool {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, ok = g.Get().(string)
	return ok
}

// validate checks what parsing alone does not: the broker's ranges (broker.Config.Validate)
// and cmd/warren's own settings. A zero that the broker would read as "default" is refused
// where it is no meaningful value.
func (c *config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ChannelMax == 0 {
		bad("channel-max 0: want 1 to 65535")
	}
	if c.AMQPListen == "" {
		bad("amqp-listen: empty")
	}
	if c.DataDir == "" {
		bad("data-dir: empty")
	}
	if _, err := zerolog.ParseLevel(c.logLevel); err != nil || c.logLevel == "" {
		bad("log-level %q: want trace, debug, info, warn or error", c.logLevel)
	}
	if err := c.cl.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
