// Package mgmt serves Warren's HTTP management API, shaped like RabbitMQ's management plugin
// (the fields rabbitmqadmin, dashboards and monitoring tools read), and Prometheus metrics at
// /metrics.
//
//	h := mgmt.New(mgmt.Config{Broker: srv})
//	defer h.Close() // stops the rate sampler
//	http.Serve(ln, h)
//
// Every /api/ endpoint needs HTTP basic auth with a broker user tagged management, monitoring,
// policymaker or administrator (401 without or with bad credentials, 403 without a tag, as
// RabbitMQ); users, permissions, definitions and vhost changes need administrator. /metrics and
// /api/health are open, like RabbitMQ's Prometheus endpoint. Writes on a vhost's exchanges,
// queues and bindings apply the user's configure/write/read and topic permissions (perms.go).
// Writes must carry application/json bodies and are refused when they come from another web
// origin; CORS headers are sent only for Config.CORSOrigins (csrf.go).
//
// Message rates (the *_details.rate fields) come from one sampler goroutine that reads the
// broker's counters every SampleInterval (5 s, as RabbitMQ's default) and keeps the per-second
// rate over the last interval; the hot paths only bump atomics.
package mgmt

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/cluster"
)

// CompatVersion is the RabbitMQ version whose management API Warren mirrors; it is reported
// as rabbitmq_version and management_version, which some tools use to pick API features.
const CompatVersion = broker.CompatVersion

// Config configures the management server.
type Config struct {
	Broker *broker.Server
	Log    zerolog.Logger
	// SampleInterval is how often message rates are sampled (default 5s).
	SampleInterval time.Duration
	// Node is the node name shown in the API (default "warren@" + hostname).
	Node string
	// Collectors are extra Prometheus collectors served at /metrics (e.g. storage metrics).
	Collectors []prometheus.Collector
	// CORSOrigins are the web origins ("https://ops.example.com", or "*" for any) allowed to
	// call the API from another site, as RabbitMQ's management.cors.allow_origins. Empty (the
	// default): no CORS headers, and state-changing requests from other origins are refused.
	CORSOrigins []string
	// Cluster is this node's cluster membership (nil: a single node).
	Cluster *cluster.Node
	// Listeners lists the node's listeners that management does not see by itself, for the
	// port and protocol health checks (health.go); CertFile and CACertFile are the TLS
	// listeners' certificate files, read by the certificate-expiration check.
	Listeners            func() []Listener
	CertFile, CACertFile string
}

// Server is the management HTTP handler. Close stops its sampler goroutine.
type Server struct {
	cfg     Config
	b       *broker.Server
	log     zerolog.Logger
	mux     *http.ServeMux
	metrics http.Handler // Prometheus exposition (metrics.go)
	started time.Time
	rates   *sampler
	// patterns are the authenticated API routes, for tests that must cover every one.
	patterns []string
	// peerHTTP asks other cluster nodes' management listeners (cluster.go).
	peerHTTP *http.Client

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns the management handler and starts its rate sampler.
func New(cfg Config) *Server {
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = 5 * time.Second
	}
	if cfg.Node == "" {
		host, _ := os.Hostname()
		cfg.Node = "warren@" + host
	}
	if cfg.Cluster != nil {
		cfg.Node = cfg.Cluster.Name()
	}
	s := &Server{
		peerHTTP: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
		cfg:      cfg, b: cfg.Broker,
		log:     cfg.Log.With().Str("component", "mgmt").Logger(),
		mux:     http.NewServeMux(),
		started: time.Now(),
		rates:   newSampler(),
		stop:    make(chan struct{}),
	}
	s.metrics = s.metricsHandler()
	s.routes()
	s.rates.sample(s.b, time.Now())
	s.wg.Add(1)
	go s.sampleLoop()
	return s
}

// ServeHTTP implements http.Handler. The API puts names that may contain "/" into single path
// segments, escaped ("/" as %2F, the default vhost). ServeMux matches on the decoded path, so
// the mux sees the escaped path as the literal one and pathValue decodes each segment. As
// RabbitMQ, every route also answers with one trailing slash (/api/queues/%2F/).
//
// Before routing, the cross-site defences of csrf.go run: CORS headers only for configured
// origins, and a state-changing request from another origin is refused (403).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e := s.log.Debug(); e.Enabled() {
		e.Discard() // the access log line is written once the answer is known
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			user, _, _ := r.BasicAuth()
			s.log.Debug().Str("method", r.Method).Str("path", r.URL.EscapedPath()).Int("status", sw.status).
				Int64("bytes", sw.bytes).Str("user", user).Str("remote", r.RemoteAddr).
				Dur("duration", time.Since(start)).Msg("http request")
		}()
		w = sw
	}
	if s.corsPreflight(w, r) || s.refuseCrossSite(w, r) {
		return
	}
	r2 := *r
	u := *r.URL
	u.Path, u.RawPath = r.URL.EscapedPath(), ""
	if len(u.Path) > 1 && strings.HasSuffix(u.Path, "/") {
		u.Path = u.Path[:len(u.Path)-1]
	}
	r2.URL = &u
	s.mux.ServeHTTP(w, &r2)
}

// statusWriter notes the status and size of an answer for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer (Flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes on to the writer below when it flushes.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// pathValue returns the decoded path segment of wildcard name.
func pathValue(r *http.Request, name string) string {
	v := r.PathValue(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

// Close stops the sampler and waits for it. Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	return nil
}

func (s *Server) sampleLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SampleInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.rates.sample(s.b, now)
		}
	}
}

func (s *Server) routes() {
	m := s.mux
	open := func(pattern string, h http.HandlerFunc) { m.HandleFunc(pattern, h) }
	user := func(pattern string, h http.HandlerFunc) {
		s.patterns = append(s.patterns, pattern)
		m.Handle(pattern, s.auth(levelMonitor, h))
	}
	admin := func(pattern string, h http.HandlerFunc) {
		s.patterns = append(s.patterns, pattern)
		m.Handle(pattern, s.auth(levelAdmin, h))
	}

	open("GET /api/health", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, obj{"status": "ok"}) })
	open("GET /metrics", s.metrics.ServeHTTP)
	s.dashboardRoutes(m) // the web UI at / and /ui/ (dashboard.go)

	user("GET /api/overview", s.overview)
	user("GET /api/nodes", s.nodes)
	user("GET /api/nodes/{node}", s.node)
	user("GET /api/whoami", s.whoami)
	user("GET /api/cluster", s.clusterStatus)
	admin("DELETE /api/cluster/nodes/{node}", s.forgetNode)
	admin("POST /api/queues/{vhost}/{name}/members", s.addMember)
	admin("POST /api/queues/{vhost}/{name}/leader", s.moveLeader)
	admin("POST /api/rebalance", s.rebalance)
	admin("POST /api/cluster/nodes/{node}/drain", s.drain)
	admin("POST /api/cluster/nodes/{node}/revive", s.revive)
	admin("DELETE /api/queues/{vhost}/{name}/members/{node}", s.deleteMember)
	user("GET /api/health/checks/alarms", s.checkAlarms)
	user("GET /api/health/checks/local-alarms", s.checkLocalAlarms)
	user("GET /api/health/checks/virtual-hosts", s.checkVirtualHosts)
	user("GET /api/health/checks/port-listener/{port}", s.checkPortListener)
	user("GET /api/health/checks/protocol-listener/{protocol}", s.checkProtocolListener)
	user("GET /api/health/checks/certificate-expiration/{within}/{unit}", s.checkCertificateExpiration)
	user("GET /api/health/checks/node-is-quorum-critical", s.checkQuorumCritical)
	user("GET /api/aliveness-test/{vhost}", s.aliveness)
	user("GET /api/extensions", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, []obj{}) })

	user("GET /api/connections", s.connections)
	user("GET /api/vhosts/{vhost}/connections", s.connections)
	user("GET /api/connections/{name}", s.connection)
	user("DELETE /api/connections/{name}", s.closeConnection)
	user("GET /api/connections/{name}/channels", s.channels)
	user("GET /api/channels", s.channels)
	user("GET /api/vhosts/{vhost}/channels", s.channels)
	user("GET /api/channels/{name}", s.channel)
	user("GET /api/consumers", s.consumers)
	user("GET /api/consumers/{vhost}", s.consumers)

	user("GET /api/exchanges", s.exchanges)
	user("GET /api/exchanges/{vhost}", s.exchanges)
	user("GET /api/exchanges/{vhost}/{name}", s.exchange)
	user("PUT /api/exchanges/{vhost}/{name}", s.declareExchange)
	user("DELETE /api/exchanges/{vhost}/{name}", s.deleteExchange)
	user("POST /api/exchanges/{vhost}/{name}/publish", s.publish)
	user("GET /api/exchanges/{vhost}/{name}/bindings/source", s.exchangeBindings(true))
	user("GET /api/exchanges/{vhost}/{name}/bindings/destination", s.exchangeBindings(false))

	user("GET /api/queues", s.queues)
	user("GET /api/queues/{vhost}", s.queues)
	user("GET /api/queues/{vhost}/{name}", s.queue)
	user("PUT /api/queues/{vhost}/{name}", s.declareQueue)
	user("DELETE /api/queues/{vhost}/{name}", s.deleteQueue)
	user("DELETE /api/queues/{vhost}/{name}/contents", s.purgeQueue)
	user("POST /api/queues/{vhost}/{name}/get", s.getMessages)
	user("GET /api/queues/{vhost}/{name}/bindings", s.queueBindings)

	user("GET /api/bindings", s.bindings)
	user("GET /api/bindings/{vhost}", s.bindings)
	for _, k := range []string{"q", "e"} {
		p := "/api/bindings/{vhost}/e/{source}/" + k + "/{dest}"
		user("GET "+p, s.bindingsBetween(k))
		user("POST "+p, s.createBinding(k))
		user("GET "+p+"/{props}", s.binding(k))
		user("DELETE "+p+"/{props}", s.deleteBinding(k))
	}

	user("GET /api/vhosts", s.vhosts)
	user("GET /api/vhosts/{vhost}", s.vhost)
	admin("PUT /api/vhosts/{vhost}", s.putVHost)
	admin("DELETE /api/vhosts/{vhost}", s.deleteVHost)
	admin("GET /api/vhosts/{vhost}/permissions", s.permissions)
	admin("GET /api/users", s.users)
	admin("GET /api/users/{name}", s.user)
	admin("PUT /api/users/{name}", s.putUser)
	admin("DELETE /api/users/{name}", s.deleteUser)
	admin("GET /api/users/{name}/permissions", s.permissions)
	admin("GET /api/permissions", s.permissions)
	admin("GET /api/permissions/{vhost}/{user}", s.permission)
	admin("PUT /api/permissions/{vhost}/{user}", s.putPermission)
	admin("DELETE /api/permissions/{vhost}/{user}", s.deletePermission)
	user("GET /api/vhost-limits", s.vhostLimits)
	user("GET /api/vhost-limits/{vhost}", s.vhostLimits)
	admin("PUT /api/vhost-limits/{vhost}/{name}", s.setVHostLimit(false))
	admin("DELETE /api/vhost-limits/{vhost}/{name}", s.setVHostLimit(true))
	admin("GET /api/user-limits", s.userLimits)
	admin("GET /api/user-limits/{user}", s.userLimits)
	admin("PUT /api/user-limits/{user}/{name}", s.setUserLimit(false))
	admin("DELETE /api/user-limits/{user}/{name}", s.setUserLimit(true))
	admin("GET /api/topic-permissions", s.topicPermissions)
	admin("GET /api/topic-permissions/{vhost}/{user}", s.topicPermissions)
	admin("PUT /api/topic-permissions/{vhost}/{user}", s.putTopicPermission)
	admin("DELETE /api/topic-permissions/{vhost}/{user}", s.deleteTopicPermission)
	admin("GET /api/users/{name}/topic-permissions", s.topicPermissions)
	admin("GET /api/vhosts/{vhost}/topic-permissions", s.topicPermissions)
	user("GET /api/policies", s.policies)
	user("GET /api/policies/{vhost}", s.policies)
	user("GET /api/policies/{vhost}/{name}", s.policy)
	admin("PUT /api/policies/{vhost}/{name}", s.putPolicy)
	admin("DELETE /api/policies/{vhost}/{name}", s.deletePolicy)
	admin("GET /api/definitions", s.exportDefinitions)
	admin("GET /api/definitions/{vhost}", s.exportDefinitions)
	admin("POST /api/definitions", s.importDefinitions)
	admin("POST /api/definitions/{vhost}", s.importDefinitions)
}

func (s *Server) ok(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, obj{"status": "ok"})
}
