// Package mgmt serves Warren's HTTP management endpoint. For now it answers /api/health and a
// minimal /api/overview; the RabbitMQ-compatible API grows here.
//
//	h := mgmt.New(mgmt.Config{Broker: srv})
//	http.Serve(ln, h)
package mgmt

import (
	"encoding/json"
	"net/http"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
)

// Config configures the handler.
type Config struct {
	Broker *broker.Server
	Log    zerolog.Logger
}

// New returns the HTTP handler.
func New(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /api/health/checks/alarms", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /api/overview", func(w http.ResponseWriter, r *http.Request) {
		s := cfg.Broker
		queues := 0
		for _, v := range s.VHosts() {
			queues += len(v.Queues())
		}
		writeJSON(w, map[string]any{
			"product_name":    "Warren",
			"product_version": broker.Version,
			"object_totals": map[string]int{
				"connections": len(s.Connections()),
				"queues":      queues,
			},
		})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
