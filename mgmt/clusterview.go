package mgmt

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/warrenmq/warren/cluster"
)

// Connections, channels and consumers live on the node a client is connected to. In a cluster
// every node's lists show the whole cluster, as RabbitMQ's management does: a node asks each
// other live member for its own objects (the same path, the caller's credentials, and the
// header localOnly so that the member does not ask further), and adds them to its own, each
// object with its "node". An object named in a path (GET or DELETE of one connection) that is
// not here is looked for on the other members.

// localOnly marks a request that one node makes of another for its own objects.
const localOnly = "X-Warren-Local"

// clusterWide reports whether a request's list should gather every member's objects.
func (s *Server) clusterWide(r *http.Request) bool {
	return s.cfg.Cluster != nil && r.Header.Get(localOnly) == ""
}

// peers lists the other live members with a management listener.
func (s *Server) peers() []cluster.Member {
	var out []cluster.Member
	for _, m := range s.cfg.Cluster.Members() {
		if m.Name != s.cfg.Node && m.Status == "alive" && m.HTTP != "" {
			out = append(out, m)
		}
	}
	return out
}

// askPeer makes the request method path of member m for its own objects, within a second.
func (s *Server) askPeer(r *http.Request, m cluster.Member, method, path string) (int, []byte, error) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, scheme+"://"+m.HTTP+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set(localOnly, "1")
	if x := r.Header.Get("X-Reason"); x != "" {
		req.Header.Set("X-Reason", x)
	}
	resp, err := s.peerHTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}

// peerItems gathers the list at the request's path from every other live member (members that
// do not answer within a second are left out, as RabbitMQ leaves out a node that is down).
func (s *Server) peerItems(r *http.Request) []obj {
	if !s.clusterWide(r) {
		return nil
	}
	peers := s.peers()
	lists := make([][]obj, len(peers))
	var wg sync.WaitGroup
	for i, m := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := s.askPeer(r, m, "GET", r.URL.Path) // already escaped: the server routes on the escaped path (mgmt.go)
			if err != nil || code != http.StatusOK {
				return
			}
			var items []obj
			if json.Unmarshal(body, &items) == nil {
				lists[i] = items
			}
		}()
	}
	wg.Wait()
	var out []obj
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// onPeer passes a request for one object that is not on this node to the member that has it:
// the first answer that is not a 404 is written. false when no member has it.
func (s *Server) onPeer(w http.ResponseWriter, r *http.Request) bool {
	if !s.clusterWide(r) {
		return false
	}
	for _, m := range s.peers() {
		code, body, err := s.askPeer(r, m, r.Method, r.URL.Path) // already escaped: the server routes on the escaped path (mgmt.go)
		if err != nil || code == http.StatusNotFound {
			continue
		}
		if len(body) > 0 {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(code)
		w.Write(body)
		return true
	}
	return false
}
