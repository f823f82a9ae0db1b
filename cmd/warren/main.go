// Command warren runs a Warren broker node. With no flags it starts a single node with AMQP on
// 127.0.0.1:5672, HTTP management on 127.0.0.1:15672 and data in ./data.
//
// Every flag can also be set with an environment variable: --amqp-listen is
// WARREN_AMQP_LISTEN, --data-dir is WARREN_DATA_DIR, and so on. Flags win over the
// environment, which wins over the --config file (JSON, keys as the flag names).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/mgmt"
	"github.com/warrenmq/warren/wal"
)

type options struct {
	AMQPListen     string  `json:"amqp-listen"`
	HTTPListen     string  `json:"http-listen"`
	DataDir        string  `json:"data-dir"`
	LogLevel       string  `json:"log-level"`
	LogJSON        bool    `json:"log-json"`
	AddrFile       string  `json:"addr-file"`
	MaxMessageSize int     `json:"max-message-size"`
	MemoryBudget   int64   `json:"memory-budget"`
	SegmentSize    int     `json:"wal-segment-size"`
	MemWatermark   float64 `json:"vm-memory-high-watermark"`
	DiskFreeLimit  int64   `json:"disk-free-limit"`
	MaxQueueMemory int64   `json:"max-queue-memory"`
	Heartbeat      int     `json:"heartbeat"`
	FrameMax       int     `json:"frame-max"`
	ChannelMax     int     `json:"channel-max"`
	DefaultUser    string  `json:"default-user"`
	DefaultPass    string  `json:"default-pass"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "warren:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	o := options{AMQPListen: "127.0.0.1:5672", HTTPListen: "127.0.0.1:15672", DataDir: "data", LogLevel: "info", Heartbeat: 60}
	fs := flag.NewFlagSet("warren", flag.ContinueOnError)
	config := fs.String("config", "", "config file (JSON; keys as the flag names)")
	fs.StringVar(&o.AMQPListen, "amqp-listen", o.AMQPListen, "AMQP listen address")
	fs.StringVar(&o.HTTPListen, "http-listen", o.HTTPListen, "HTTP management listen address (empty: off)")
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "data folder")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "log level: trace, debug, info, warn, error")
	fs.BoolVar(&o.LogJSON, "log-json", o.LogJSON, "log JSON lines instead of console text")
	fs.StringVar(&o.AddrFile, "addr-file", "", "write the bound addresses as JSON {\"amqp\":...,\"http\":...} to this file")
	fs.IntVar(&o.MaxMessageSize, "max-message-size", 128<<20, "largest accepted message body in bytes")
	fs.IntVar(&o.SegmentSize, "wal-segment-size", 1<<20, "bytes per log segment; each busy queue keeps about two in memory")
	fs.Int64Var(&o.MemoryBudget, "memory-budget", 0, "bytes of queued messages kept in memory node-wide before they wait on disk (0: a quarter of RAM)")
	fs.Int64Var(&o.MaxQueueMemory, "max-queue-memory", 0, "bytes of queued messages one queue keeps in memory before the rest waits on disk (0: 16 MiB)")
	fs.Float64Var(&o.MemWatermark, "vm-memory-high-watermark", 0.4, "memory alarm above this fraction of RAM: publishers are blocked (negative: off)")
	fs.Int64Var(&o.DiskFreeLimit, "disk-free-limit", 50_000_000, "disk alarm below this many free bytes in --data-dir (negative: off)")
	fs.IntVar(&o.Heartbeat, "heartbeat", o.Heartbeat, "heartbeat interval offered to clients, seconds (0: off)")
	sendTimeout := fs.Duration("send-timeout", 30*time.Second, "close a connection whose client takes no bytes for this long (it stopped reading); its unacked messages are requeued (negative: never)")
	fs.IntVar(&o.FrameMax, "frame-max", 131072, "largest frame offered to clients, bytes")
	fs.IntVar(&o.ChannelMax, "channel-max", 2047, "most channels per connection")
	fs.StringVar(&o.DefaultUser, "default-user", "guest", "initial user (guest may connect only from loopback)")
	fs.StringVar(&o.DefaultPass, "default-pass", "guest", "initial user's password")
	sec := registerSecurityFlags(fs)
	encf := registerEncryptionFlags(fs)
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until shutdown (for performance work)")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file at shutdown (for performance work)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if *memProfile != "" {
		defer func() {
			if f, err := os.Create(*memProfile); err == nil {
				pprof.WriteHeapProfile(f)
				f.Close()
			}
		}()
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// config file < environment < flags
	cfgPath := *config
	if cfgPath == "" {
		cfgPath = os.Getenv("WARREN_CONFIG")
	}
	if cfgPath != "" {
		data, err := os.ReadFile(cfgPath)
		if err != nil {
			return err
		}
		fileOpts := map[string]any{}
		if err := json.Unmarshal(data, &fileOpts); err != nil {
			return fmt.Errorf("config %s: %w", cfgPath, err)
		}
		for k, v := range fileOpts {
			if fs.Lookup(k) == nil {
				return fmt.Errorf("config %s: unknown key %q", cfgPath, k)
			}
			if !set[k] {
				if err := fs.Set(k, fmt.Sprint(v)); err != nil {
					return fmt.Errorf("config %s: %s: %w", cfgPath, k, err)
				}
			}
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "WARREN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", env, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}

	level, err := zerolog.ParseLevel(o.LogLevel)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	var log zerolog.Logger
	if o.LogJSON {
		log = zerolog.New(os.Stderr)
	} else {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	}
	host, _ := os.Hostname()
	log = log.Level(level).With().Timestamp().Str("node", "warren@"+host).Logger()

	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	enc, err := encf.load(o.DataDir, log)
	if err != nil {
		return err
	}
	walCfg := wal.Config{Dir: filepath.Join(o.DataDir, "wal"), SegmentSize: o.SegmentSize, Logger: log.With().Str("component", "wal").Logger()}
	store, err := openStorage(walCfg, filepath.Join(o.DataDir, "spill"), enc)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if err := sec.prepare(); err != nil {
		store.Close()
		return err
	}
	bcfg := broker.Config{
		AMQPListen: o.AMQPListen, DataDir: o.DataDir, Log: log, Storage: store,
		MemoryBudget: o.MemoryBudget, MaxQueueMemory: o.MaxQueueMemory,
		MemoryHighWatermark: o.MemWatermark, DiskFreeLimit: o.DiskFreeLimit,
		MaxMessageSize: o.MaxMessageSize, Heartbeat: uint16(o.Heartbeat), NoHeartbeat: o.Heartbeat == 0,
		FrameMax: uint32(o.FrameMax), ChannelMax: uint16(o.ChannelMax), SendTimeout: *sendTimeout,
		DefaultUser: o.DefaultUser, DefaultPass: o.DefaultPass,
	}
	sec.apply(&bcfg)
	srv, err := broker.New(bcfg)
	if err != nil {
		store.Close()
		return err
	}
	if err := sec.load(srv); err != nil {
		srv.Close()
		return fmt.Errorf("--definitions: %w", err)
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return err
	}
	var httpSrv *http.Server
	httpAddr := ""
	if o.HTTPListen != "" {
		ln, err := net.Listen("tcp", o.HTTPListen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("http listen %s: %w", o.HTTPListen, err)
		}
		httpAddr = ln.Addr().String()
		ln = sec.wrapHTTP(ln)
		mg := mgmt.New(mgmt.Config{Broker: srv, Log: log})
		defer mg.Close()
		httpSrv = &http.Server{Handler: mg, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Msg("http server failed")
			}
		}()
		log.Info().Str("addr", httpAddr).Msg("http listening")
	}
	if o.AddrFile != "" {
		data, _ := json.Marshal(map[string]string{"amqp": srv.Addr().String(), "http": httpAddr, "amqps": amqpsAddr(srv)})
		tmp := o.AddrFile + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Clean(o.AddrFile)); err != nil {
			return err
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info().Str("signal", s.String()).Msg("shutting down")
	if httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		httpSrv.Shutdown(ctx)
		cancel()
	}
	return srv.Close()
}
