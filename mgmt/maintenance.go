package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/warrenmq/warren/broker/vhost"
	"github.com/warrenmq/warren/cluster"
)

// Operating a cluster: move a replicated queue's leader (the leader node does it: other nodes
// pass the request on), spread leaders evenly (rabbitmq-queues rebalance quorum), and drain a
// node for maintenance (rabbitmq-upgrade drain / revive).

// proxy passes a request on to a member's management listener with the caller's credentials;
// it returns false when this node must answer itself.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, node, path string, body []byte) bool {
	if s.cfg.Cluster == nil || node == s.cfg.Node {
		return false
	}
	var m cluster.Member
	for _, x := range s.cfg.Cluster.Members() {
		if x.Name == node {
			m = x
		}
	}
	if m.HTTP == "" || m.Status != "alive" {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "node '"+node+"' is not reachable")
		return true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, scheme+"://"+m.HTTP+path, bytes.NewReader(body))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return true
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set("Content-Type", "application/json")
	cl := &http.Client{Timeout: 60 * time.Second, Transport: s.peerHTTP.Transport}
	resp, err := cl.Do(req)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return true
	}
	defer resp.Body.Close()
	if r.Method != http.MethodGet && resp.StatusCode/100 == 2 {
		// What the other node committed (leaders moved by a drain) is applied here before the
		// answer: a client that asked this node reads its own changes here next.
		for _, v := range s.b.VHosts() {
			v.CatchUp()
			break
		}
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
	return true
}

// moveLeader moves a replicated queue's leader: POST /api/queues/{vhost}/{name}/leader
// {"node": NAME} ("" or no body: the most up-to-date replica).
func (s *Server) moveLeader(w http.ResponseWriter, r *http.Request) {
	vh, name, ok := s.memberTarget(w, r)
	if !ok {
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	var req struct {
		Node string `json:"node"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "a JSON body {\"node\": NAME} is expected")
			return
		}
	}
	p, _ := vh.PlacementOf(name)
	if s.proxy(w, r, p.Leader, r.URL.Path, body) {
		return
	}
	s.memberResult(w, vh.TransferLeader(name, req.Node))
}

// rebalance spreads the leaders of replicated queues evenly over the running nodes that hold
// their replicas: POST /api/rebalance. It answers the moves made.
func (s *Server) rebalance(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cluster == nil {
		writeObj(w, r, obj{"moved": []obj{}})
		return
	}
	up := map[string]bool{}
	for _, m := range s.cfg.Cluster.Members() {
		if m.Status == "alive" {
			up[m.Name] = true
		}
	}
	type q struct {
		vh *vhost.VHost
		p  vhost.Placement
	}
	var qs []q
	count := map[string]int{}
	for n := range up {
		count[n] = 0
	}
	for _, vh := range s.b.VHosts() {
		for _, p := range vh.Placements() {
			qs = append(qs, q{vh, p})
			count[p.Leader]++
		}
	}
	sort.Slice(qs, func(i, j int) bool { return qs[i].vh.Name+"/"+qs[i].p.Queue < qs[j].vh.Name+"/"+qs[j].p.Queue })
	moved := []obj{}
	var failures []string
	for _, x := range qs {
		from := x.p.Leader
		best := ""
		for _, rep := range x.p.Replicas {
			if up[rep] && rep != from && (best == "" || count[rep] < count[best]) {
				best = rep
			}
		}
		if best == "" || count[from]-count[best] < 2 {
			continue
		}
		if err := s.transferVia(r, x.vh.Name, x.p.Queue, from, best); err != nil {
			failures = append(failures, x.vh.Name+"/"+x.p.Queue+": "+err.Error())
			continue
		}
		count[from]--
		count[best]++
		moved = append(moved, obj{"vhost": x.vh.Name, "queue": x.p.Queue, "from": from, "to": best})
	}
	writeObj(w, r, obj{"moved": moved, "failed": failures})
}

// transferVia asks the queue's leader node (this one or another) to move its leadership.
func (s *Server) transferVia(r *http.Request, vh, queue, leader, to string) error {
	if leader == s.cfg.Node {
		v := s.b.VHost(vh)
		if v == nil {
			return errors.New("no such vhost")
		}
		return v.TransferLeader(queue, to)
	}
	var m cluster.Member
	for _, x := range s.cfg.Cluster.Members() {
		if x.Name == leader {
			m = x
		}
	}
	if m.HTTP == "" {
		return errors.New("leader node not reachable")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	b, _ := json.Marshal(map[string]string{"node": to})
	req, err := http.NewRequest("POST", scheme+"://"+m.HTTP+"/api/queues/"+url.PathEscape(vh)+"/"+url.PathEscape(queue)+"/leader", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second, Transport: s.peerHTTP.Transport}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return errors.New(string(msg))
	}
	return nil
}

// drain puts a node in maintenance: POST /api/cluster/nodes/{node}/drain. Its replicated
// queues' leaderships go to in-sync replicas first, then its clients are disconnected (320)
// and new ones refused. The answer says what moved and whether it is safe to stop the node
// (it leads no replicated queue any more).
func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	node := pathValue(r, "node")
	if s.proxy(w, r, node, r.URL.Path, []byte("{}")) {
		return
	}
	if node != s.cfg.Node {
		notFound(w)
		return
	}
	moved, failures := []obj{}, []string{}
	leads := 0
	for _, vh := range s.b.VHosts() {
		for _, p := range vh.Placements() {
			if p.Leader != s.cfg.Node {
				continue
			}
			if err := vh.TransferLeader(p.Queue, ""); err != nil {
				failures = append(failures, vh.Name+"/"+p.Queue+": "+err.Error())
				leads++
				continue
			}
			moved = append(moved, obj{"vhost": vh.Name, "queue": p.Queue})
		}
	}
	s.b.Drain()
	writeObj(w, r, obj{"node": node, "being_drained": true, "moved": moved, "failed": failures, "safe_to_stop": leads == 0})
}

// revive ends maintenance: POST /api/cluster/nodes/{node}/revive.
func (s *Server) revive(w http.ResponseWriter, r *http.Request) {
	node := pathValue(r, "node")
	if s.proxy(w, r, node, r.URL.Path, []byte("{}")) {
		return
	}
	if node != s.cfg.Node {
		notFound(w)
		return
	}
	s.b.Revive()
	writeObj(w, r, obj{"node": node, "being_drained": false})
}
