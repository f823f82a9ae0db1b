package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// servePrometheus serves the metrics handler on addr (--prometheus-listen, RabbitMQ's
// Prometheus port 15692 by default) until the returned server is shut down, and returns the
// bound address.
func servePrometheus(addr string, h http.Handler, log zerolog.Logger) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("prometheus listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("prometheus server failed")
		}
	}()
	bound := ln.Addr().String()
	log.Info().Str("addr", bound).Msg("prometheus listening")
	return srv, bound, nil
}
