// Command warren-perf is a load generator for AMQP 0-9-1 brokers in the
// spirit of RabbitMQ's PerfTest: producers and consumers over a set of
// queues, optional publisher confirms and manual (multiple) acks, per-second
// progress with end-to-end latency, and a final summary that can include
// the broker's CPU use (--pid). It also has two memory scenarios
// (--idle-queues, --idle-connections). See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "warren-perf: %v\n", err)
		return 2
	}

	// Hard watchdog: whatever happens (a broker that stops answering, a
	// write blocked forever), the process exits.
	limit := cfg.hardTimeout()
	watchdog := time.AfterFunc(limit, func() {
		fmt.Fprintf(stderr, "warren-perf: hard timeout (%s) reached, exiting\n", limit)
		os.Exit(3)
	})
	defer watchdog.Stop()

	// First SIGINT/SIGTERM ends the run early (with cleanup and summary);
	// a second one kills the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
	defer stop()

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "warren-perf: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "warren-perf: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	progress := stdout
	if cfg.JSON {
		progress = stderr
	}

	var summary any
	var text string
	failed := false
	if cfg.idleMode() {
		s, err := runIdle(ctx, cfg, progress)
		if err != nil {
			fmt.Fprintf(stderr, "warren-perf: %v\n", err)
			return 1
		}
		summary, text, failed = s, FormatIdle(s), len(s.Errors) > 0 && s.Created < s.Requested
	} else {
		s, err := runLoad(ctx, cfg, progress)
		if err != nil {
			fmt.Fprintf(stderr, "warren-perf: %v\n", err)
			return 1
		}
		summary, text = s, FormatSummary(s)
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(summary); err != nil {
			fmt.Fprintf(stderr, "warren-perf: %v\n", err)
			return 1
		}
	} else {
		fmt.Fprint(stdout, text)
	}
	if failed {
		return 1
	}
	return 0
}
