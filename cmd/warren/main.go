// Command warren runs a Warren broker node. With no flags it starts a single node with AMQP on
// 127.0.0.1:5672, HTTP management on 127.0.0.1:15672 and data in ./data.
//
// Every flag can also be set with an environment variable: --amqp-listen is
// WARREN_AMQP_LISTEN, --data-dir is WARREN_DATA_DIR, and so on. Flags win over the
// environment, which wins over the --config file (JSON, keys as the flag names). Byte sizes
// take RabbitMQ's units: 50000000, 50MB, 1GiB (config.go, size.go).
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

func main() {
	err := run(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "warren:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if wantsVersion(args) {
		fmt.Fprintln(os.Stdout, versionText())
		return nil
	}
	c, err := loadConfig(args, os.Stderr)
	if err != nil {
		return err
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if c.memProfile != "" {
		defer func() {
			if f, err := os.Create(c.memProfile); err == nil {
				pprof.WriteHeapProfile(f)
				f.Close()
			}
		}()
	}

	level, _ := zerolog.ParseLevel(c.logLevel) // checked by loadConfig
	log := newLogger(os.Stderr, c.logJSON).Level(level).With().Timestamp().Str("node", c.cl.name()).Logger()

	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	enc, err := c.enc.load(c.DataDir, log)
	if err != nil {
		return err
	}
	walCfg := wal.Config{Dir: filepath.Join(c.DataDir, "wal"), SegmentSize: c.segmentSize, Logger: log.With().Str("component", "wal").Logger()}
	store, err := openStorage(walCfg, filepath.Join(c.DataDir, "spill"), enc)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if err := c.sec.prepare(); err != nil {
		store.Close()
		return err
	}
	bcfg := c.Config
	bcfg.Log, bcfg.Storage = log, store
	c.sec.apply(&bcfg)
	var cl *clusterRun
	if c.cl.enabled() {
		if cl, err = c.cl.setup(&bcfg, store, c.httpListen, log); err != nil {
			store.Close()
			return err
		}
	}
	srv, err := broker.New(bcfg)
	if err != nil {
		cl.close()
		store.Close()
		return err
	}
	defer cl.close() // after the broker closed its connections
	if cl != nil {
		cl.serve(srv)
		cl.started(srv)
	}
	if err := c.sec.load(srv); err != nil {
		srv.Close()
		return fmt.Errorf("--definitions: %w", err)
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return err
	}
	var mg *mgmt.Server
	if c.httpListen != "" || c.prometheusListen != "" {
		mg = mgmt.New(mgmt.Config{Broker: srv, Log: log, CORSOrigins: splitList(c.corsOrigins), Cluster: cl.clusterNode(), Node: c.cl.name(),
			CertFile: c.sec.tlsCert, CACertFile: c.sec.tlsCA})
		defer mg.Close()
	}
	var httpSrv *http.Server
	httpAddr := ""
	if c.httpListen != "" {
		ln, err := net.Listen("tcp", c.httpListen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("http listen %s: %w", c.httpListen, err)
		}
		httpAddr = ln.Addr().String()
		ln = c.sec.wrapHTTP(ln)
		httpSrv = &http.Server{Handler: mg, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Msg("http server failed")
			}
		}()
		log.Info().Str("addr", httpAddr).Msg("http listening")
	}
	var promSrv *http.Server
	promAddr := ""
	if c.prometheusListen != "" {
		if promSrv, promAddr, err = servePrometheus(c.prometheusListen, mg.PrometheusHandler(), log); err != nil {
			srv.Close()
			return err
		}
	}
	if c.addrFile != "" {
		data, _ := json.Marshal(map[string]string{"amqp": srv.Addr().String(), "http": httpAddr, "amqps": amqpsAddr(srv), "prometheus": promAddr})
		tmp := c.addrFile + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Clean(c.addrFile)); err != nil {
			return err
		}
	}

	if cl != nil {
		cl.node.SetAddrs(srv.Addr().String(), httpAddr)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var fatal error
wait:
	for {
		select {
		case s := <-sig:
			log.Info().Str("signal", s.String()).Msg("shutting down")
			break wait
		case fatal = <-cl.fatal():
			log.Error().Err(fatal).Msg("leaving the cluster")
			break wait
		case <-hup:
			// SIGHUP: certificates renewed on disk are used by new TLS connections.
			if c.sec.tls == nil {
				log.Info().Msg("SIGHUP: no TLS listener, nothing to reload")
			} else if err := c.sec.reloadTLS(); err != nil {
				log.Error().Err(err).Msg("TLS certificates not reloaded: the previous ones stay in use")
			} else {
				log.Info().Str("cert", c.sec.tlsCert).Msg("TLS certificates reloaded")
			}
		}
	}
	for _, hs := range []*http.Server{httpSrv, promSrv} {
		if hs != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			hs.Shutdown(ctx)
			cancel()
		}
	}
	if err := srv.Close(); err != nil {
		return err
	}
	return fatal
}

// splitList splits a comma-separated flag value, dropping blanks ("" gives nil).
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
