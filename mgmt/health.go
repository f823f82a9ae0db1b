package mgmt

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/warrenmq/warren/broker/vhost"
)

// Health checks, as RabbitMQ 3.10's /api/health/checks/*: 200 {"status":"ok"} when the check
// passes, 503 {"status":"failed","reason":...} with what failed otherwise, 400 for a malformed
// argument. Each is the HTTP counterpart of a rabbitmq-diagnostics command (check_alarms,
// check_local_alarms, check_virtual_hosts, check_port_listener, check_protocol_listener,
// check_certificate_expiration, check_if_node_is_quorum_critical).

// Listener is a listener of this node that management cannot see by itself (Config.Listeners):
// the AMQP listeners come from the broker and the HTTP one from the request.
type Listener struct {
	// Protocol is RabbitMQ's name: "http/prometheus", "clustering", ...
	Protocol string
	// Addr is the bound host:port.
	Addr string
}

// listener is one entry of the node's listener list.
type listener struct {
	protocol string
	host     string
	port     int
	tls      bool
}

// listeners are this node's active listeners, as RabbitMQ's rabbit_networking:active_listeners
// for the local node: AMQP (and amqps), the HTTP listener the request came in on, the
// cluster's node-to-node and gossip ports ("clustering", RabbitMQ's distribution port) and the
// extra ones of Config.Listeners.
func (s *Server) listeners(r *http.Request) []listener {
	var out []listener
	add := func(proto, addr string, tls bool) {
		if addr == "" {
			return
		}
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return
		}
		port, _ := strconv.Atoi(p)
		out = append(out, listener{protocol: proto, host: h, port: port, tls: tls})
	}
	if a := s.b.Addr(); a != nil {
		add("amqp", a.String(), false)
	}
	if a := s.b.TLSAddr(); a != nil {
		add("amqp/ssl", a.String(), true)
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if r.TLS != nil {
			add("https", la.String(), true)
		} else {
			add("http", la.String(), false)
		}
	}
	if s.cfg.Cluster != nil {
		add("clustering", s.cfg.Cluster.RPCAddr(), false)
		add("clustering", s.cfg.Cluster.GossipAddr(), false)
	}
	if s.cfg.Listeners != nil {
		for _, l := range s.cfg.Listeners() {
			add(l.Protocol, l.Addr, l.Protocol == "https" || strings.HasSuffix(l.Protocol, "/ssl"))
		}
	}
	return out
}

// healthFailed answers 503 with RabbitMQ's failure body: status, reason and the check's fields.
func healthFailed(w http.ResponseWriter, reason string, fields obj) {
	o := obj{"status": "failed", "reason": reason}
	for k, v := range fields {
		o[k] = v
	}
	writeJSON(w, http.StatusServiceUnavailable, o)
}

// alarmList is this node's alarms as RabbitMQ formats them (rabbit_alarm:format_as_maps).
func (s *Server) alarmList() []obj {
	mem, disk := s.b.Alarms()
	var list []obj
	if mem {
		list = append(list, obj{"node": s.cfg.Node, "resource": "memory"})
	}
	if disk {
		list = append(list, obj{"node": s.cfg.Node, "resource": "disk space"})
	}
	return list
}

// checkLocalAlarms is /api/health/checks/local-alarms: the alarms of this node.
func (s *Server) checkLocalAlarms(w http.ResponseWriter, r *http.Request) {
	if list := s.alarmList(); len(list) > 0 {
		healthFailed(w, "There are alarms in effect on the node", obj{"alarms": list})
		return
	}
	s.ok(w, r)
}

// checkAlarms is /api/health/checks/alarms: the alarms of every node of the cluster. The other
// members are asked for theirs (their local-alarms check, with the caller's credentials); a
// member that does not answer is not counted (RabbitMQ drops the alarms of a node it lost).
func (s *Server) checkAlarms(w http.ResponseWriter, r *http.Request) {
	list := s.alarmList()
	if s.cfg.Cluster != nil {
		for _, m := range s.cfg.Cluster.Members() {
			if m.Name == s.cfg.Node || m.Status != "alive" || m.HTTP == "" {
				continue
			}
			list = append(list, s.askAlarms(r, m.HTTP)...)
		}
	}
	if len(list) > 0 {
		healthFailed(w, "There are alarms in effect in the cluster", obj{"alarms": list})
		return
	}
	s.ok(w, r)
}

// askAlarms fetches a member's local alarms (nil when it does not answer).
func (s *Server) askAlarms(r *http.Request, addr string) []obj {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(r.Context(), "GET", scheme+"://"+addr+"/api/health/checks/local-alarms", nil)
	if err != nil {
		return nil
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	resp, err := s.peerHTTP.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Alarms []obj `json:"alarms"`
	}
	if resp.StatusCode != http.StatusServiceUnavailable || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	return body.Alarms
}

// checkVirtualHosts is /api/health/checks/virtual-hosts. A Warren vhost has no process of its
// own that could be down (RabbitMQ's vhost supervisor): every vhost of the metadata store is
// served, so the check fails only if the metadata names a vhost this node does not serve.
func (s *Server) checkVirtualHosts(w http.ResponseWriter, r *http.Request) {
	var down []string
	for _, v := range s.b.VHosts() {
		if s.b.VHost(v.Name) == nil {
			down = append(down, v.Name)
		}
	}
	if len(down) > 0 {
		healthFailed(w, "Some virtual hosts are down", obj{"virtual-hosts": down})
		return
	}
	s.ok(w, r)
}

// checkPortListener is /api/health/checks/port-listener/{port}.
func (s *Server) checkPortListener(w http.ResponseWriter, r *http.Request) {
	port, err := strconv.Atoi(pathValue(r, "port"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "Invalid port")
		return
	}
	ports := []int{}
	seen := map[int]bool{}
	for _, l := range s.listeners(r) {
		if l.port == port {
			writeJSON(w, http.StatusOK, obj{"status": "ok", "port": port})
			return
		}
		if !seen[l.port] {
			seen[l.port] = true
			ports = append(ports, l.port)
		}
	}
	sort.Ints(ports)
	healthFailed(w, "No active listener", obj{"missing": port, "ports": ports})
}

// protocolAliases are the other names RabbitMQ's protocol-listener check accepts for a
// protocol (the ones that can apply to Warren).
var protocolAliases = map[string]string{
	"amqp091": "amqp", "amqp0.9.1": "amqp", "amqp0-9-1": "amqp", "amqp0_9_1": "amqp",
	"amqp10": "amqp", "amqp1.0": "amqp", "amqp1-0": "amqp", "amqp1_0": "amqp",
	"amqps": "amqp/ssl",
	"http1": "http", "http1.1": "http", "http_api": "http", "management": "http", "management_ui": "http", "ui": "http",
	"cli": "clustering", "distribution": "clustering",
}

// checkProtocolListener is /api/health/checks/protocol-listener/{protocol}.
func (s *Server) checkProtocolListener(w http.ResponseWriter, r *http.Request) {
	proto := strings.ToLower(pathValue(r, "protocol"))
	if a, ok := protocolAliases[proto]; ok {
		proto = a
	}
	var protocols []string
	seen := map[string]bool{}
	for _, l := range s.listeners(r) {
		if l.protocol == proto {
			writeJSON(w, http.StatusOK, obj{"status": "ok", "protocol": proto})
			return
		}
		if !seen[l.protocol] {
			seen[l.protocol] = true
			protocols = append(protocols, l.protocol)
		}
	}
	healthFailed(w, "No active listener", obj{"missing": proto, "protocols": protocols})
}

// expiryUnits are the units of the certificate-expiration check, in seconds (a month is a
// twelfth of a year, as RabbitMQ counts it).
var expiryUnits = map[string]float64{"days": 86400, "weeks": 7 * 86400, "months": 365 * 86400 / 12.0, "years": 365 * 86400}

// checkCertificateExpiration is /api/health/checks/certificate-expiration/{within}/{unit}: it
// fails when a certificate of a TLS listener (the server's or its CA bundle's, read from their
// files now, as RabbitMQ does) expires within that time, has expired, or cannot be read.
func (s *Server) checkCertificateExpiration(w http.ResponseWriter, r *http.Request) {
	within, err := strconv.ParseInt(pathValue(r, "within"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "Invalid expiration value.")
		return
	}
	unit, ok := expiryUnits[strings.ToLower(pathValue(r, "unit"))]
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "Time unit not recognised. Supported units: days, weeks, months, years.")
		return
	}
	now := time.Now()
	limit := now.Add(time.Duration(float64(within) * unit * float64(time.Second)))
	var expiring []obj
	for _, l := range s.listeners(r) {
		if !l.tls || (s.cfg.CertFile == "" && s.cfg.CACertFile == "") {
			continue
		}
		cert := expiringIn(s.cfg.CertFile, now, limit)
		ca := expiringIn(s.cfg.CACertFile, now, limit)
		if isEmptyExpiry(cert) && isEmptyExpiry(ca) {
			continue
		}
		expiring = append(expiring, obj{
			"node": s.cfg.Node, "protocol": l.protocol, "interface": l.host, "port": l.port,
			"certfile": s.cfg.CertFile, "cacertfile": s.cfg.CACertFile,
			"certfile_expires_on": cert, "cacertfile_expires_on": ca,
		})
	}
	if len(expiring) > 0 {
		healthFailed(w, "Certificates expiring", obj{"expired": expiring})
		return
	}
	s.ok(w, r)
}

func isEmptyExpiry(v any) bool {
	l, ok := v.([]string)
	return ok && len(l) == 0
}

// expiringIn lists the expiry dates ("2026-01-02 3:04:05", UTC, RabbitMQ's format) of the
// certificates in the PEM file that expire before limit; or, as RabbitMQ, {"error": reason}
// when the file cannot be read, holds no PEM block or a block that is no certificate, or a
// certificate not yet valid. An empty path gives an empty list.
func expiringIn(path string, now, limit time.Time) any {
	out := []string{}
	if path == "" {
		return out
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return obj{"error": err.Error()}
	}
	var blocks []*pem.Block
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return obj{"error": "The certificate file provided does not contain any PEM entry."}
	}
	for _, b := range blocks {
		if b.Type != "CERTIFICATE" {
			return obj{"error": fmt.Sprintf("The certificate file provided contains a %s entry", b.Type)}
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return obj{"error": err.Error()}
		}
		if c.NotBefore.After(now) {
			return obj{"error": "Certificate is not yet valid"}
		}
		if c.NotAfter.Before(limit) {
			t := c.NotAfter.UTC()
			out = append(out, fmt.Sprintf("%d-%02d-%02d %d:%02d:%02d", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second()))
		}
	}
	return out
}

// checkQuorumCritical is /api/health/checks/node-is-quorum-critical: would stopping this node
// leave a replicated queue without a majority of its replicas online, or the cluster's Raft
// metadata store without a majority of its voters? The check to run before a restart.
func (s *Server) checkQuorumCritical(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cluster == nil || len(s.cfg.Cluster.Members()) <= 1 {
		writeJSON(w, http.StatusOK, obj{"status": "ok", "reason": "single node cluster"})
		return
	}
	online := map[string]bool{}
	for _, m := range s.cfg.Cluster.Members() {
		if m.Status == "alive" {
			online[m.Name] = true
		}
	}
	crit := quorumCritical(s.cfg.Node, online, s.cfg.Cluster.Status().Voters, s.b.Placements())
	if len(crit) > 0 {
		healthFailed(w, "There are quorum queues that would lose their quorum if the target node is shut down", obj{"queues": crit})
		return
	}
	s.ok(w, r)
}

// quorumCritical lists what would lose its majority if node self stopped, in RabbitMQ's shape
// (readable_name, name, virtual_host, type): every replicated queue with a replica on self
// whose replicas online, self excepted, are fewer than a majority of its replicas, and the Raft
// metadata store (type "process", as RabbitMQ lists its own critical components) when self is a
// voter and the other voters online are fewer than a majority.
func quorumCritical(self string, online map[string]bool, voters []string, placements map[string][]vhost.Placement) []obj {
	out := []obj{}
	vhs := make([]string, 0, len(placements))
	for vh := range placements {
		vhs = append(vhs, vh)
	}
	sort.Strings(vhs)
	for _, vh := range vhs {
		ps := append([]vhost.Placement(nil), placements[vh]...)
		sort.Slice(ps, func(i, j int) bool { return ps[i].Queue < ps[j].Queue })
		for _, p := range ps {
			if !critical(self, online, p.Replicas) {
				continue
			}
			out = append(out, obj{"readable_name": fmt.Sprintf("queue '%s' in vhost '%s'", p.Queue, vh),
				"name": p.Queue, "virtual_host": vh, "type": "quorum"})
		}
	}
	if critical(self, online, voters) {
		out = append(out, obj{"readable_name": "metadata store (Raft)", "name": "metadata_store", "virtual_host": "-", "type": "process"})
	}
	return out
}

// critical reports whether self is one of members and the others online are fewer than a
// majority of members.
func critical(self string, online map[string]bool, members []string) bool {
	in, others := false, 0
	for _, m := range members {
		if m == self {
			in = true
		} else if online[m] {
			others++
		}
	}
	return in && others < len(members)/2+1
}
