package mgmt

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/warrenmq/warren/broker/vhost"
	"github.com/warrenmq/warren/cluster"
)

// The cluster as management sees it: every member in /api/nodes (each with its own figures,
// asked of the node itself), and Warren's /api/cluster (the Raft metadata store's state) with
// DELETE /api/cluster/nodes/{node} (RabbitMQ's forget_cluster_node).

// memberJSON describes a member that is not this node: asked of the node's own API (with the
// caller's credentials), or, when it does not answer, what gossip knows.
func (s *Server) memberJSON(r *http.Request, m cluster.Member) obj {
	if m.Status == "alive" && m.HTTP != "" {
		if o := s.askNode(r, m); o != nil {
			return o
		}
	}
	o := obj{"name": m.Name, "type": "disc", "running": m.Status == "alive", "being_drained": false,
		"partitions": []string{}, "exchange_types": exchangeTypes, "applications": []obj{}, "contexts": []obj{}}
	if !m.Started.IsZero() && m.Status == "alive" {
		o["uptime"] = time.Since(m.Started).Milliseconds()
	}
	return o
}

// askNode fetches /api/nodes/{name} from the member's management listener.
func (s *Server) askNode(r *http.Request, m cluster.Member) obj {
	code, body, err := s.askPeer(r, m, "GET", "/api/nodes/"+m.Name)
	if err != nil || code != http.StatusOK {
		return nil
	}
	var o obj
	if json.Unmarshal(body, &o) != nil {
		return nil
	}
	return o
}

// partitions are the nodes this node cannot reach while they are in the cluster (RabbitMQ
// lists the nodes it was partitioned from).
func (s *Server) partitions() []string {
	out := []string{}
	if s.cfg.Cluster == nil {
		return out
	}
	st := s.cfg.Cluster.Status()
	in := map[string]bool{}
	for _, n := range append(st.Voters, st.NonVoters...) {
		in[n] = true
	}
	for _, m := range s.cfg.Cluster.Members() {
		if in[m.Name] && m.Status == "failed" {
			out = append(out, m.Name)
		}
	}
	return out
}

// clusterName is RabbitMQ's default: the name of the cluster's first node (here: the first
// voter by name, the same on every node).
func (s *Server) clusterName() string {
	if s.cfg.Cluster == nil {
		return s.cfg.Node
	}
	if st := s.cfg.Cluster.Status(); len(st.Voters) > 0 {
		return st.Voters[0]
	}
	return s.cfg.Node
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cluster == nil {
		writeObj(w, r, obj{"name": s.cfg.Node, "clustered": false, "members": []obj{{"name": s.cfg.Node, "status": "alive"}}})
		return
	}
	st := s.cfg.Cluster.Status()
	members := []obj{}
	for _, m := range s.cfg.Cluster.Members() {
		role := "none"
		for _, v := range st.Voters {
			if v == m.Name {
				role = "voter"
			}
		}
		for _, v := range st.NonVoters {
			if v == m.Name {
				role = "nonvoter"
			}
		}
		members = append(members, obj{"name": m.Name, "status": m.Status, "raft": role, "gossip": m.Gossip, "rpc": m.RPC,
			"amqp": m.AMQP, "http": m.HTTP, "version": m.Version, "leader": m.Name == st.Leader})
	}
	writeObj(w, r, obj{
		"name": s.clusterName(), "clustered": true, "node": s.cfg.Node, "leader": st.Leader, "state": st.State,
		"voters": st.Voters, "nonvoters": st.NonVoters, "applied_index": st.AppliedIndex, "commit_index": st.CommitIndex,
		"last_index": st.LastIndex, "last_contact": st.LastContact, "members": members,
	})
}

func (s *Server) forgetNode(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cluster == nil {
		writeError(w, http.StatusBadRequest, "bad_request", "this node is not clustered")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Cluster.Forget(ctx, pathValue(r, "node")); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// addMember adds a replica of a replicated queue on a node (rabbitmq-queues add_member).
func (s *Server) addMember(w http.ResponseWriter, r *http.Request) {
	vh, name, ok := s.memberTarget(w, r)
	if !ok {
		return
	}
	var body struct {
		Node string `json:"node"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Node == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "a JSON body {\"node\": NAME} is needed")
		return
	}
	alive := false
	for _, m := range s.cfg.Cluster.Members() {
		alive = alive || (m.Name == body.Node && m.Status == "alive")
	}
	if !alive {
		writeError(w, http.StatusBadRequest, "bad_request", "node '"+body.Node+"' is not a running member of the cluster")
		return
	}
	s.memberResult(w, vh.AddMember(name, body.Node))
}

// deleteMember removes a replica of a replicated queue (rabbitmq-queues delete_member).
func (s *Server) deleteMember(w http.ResponseWriter, r *http.Request) {
	vh, name, ok := s.memberTarget(w, r)
	if !ok {
		return
	}
	s.memberResult(w, vh.DeleteMember(name, pathValue(r, "node")))
}

func (s *Server) memberTarget(w http.ResponseWriter, r *http.Request) (*vhost.VHost, string, bool) {
	if s.cfg.Cluster == nil {
		writeError(w, http.StatusBadRequest, "bad_request", "this node is not clustered")
		return nil, "", false
	}
	vh := s.b.VHost(pathValue(r, "vhost"))
	if vh == nil {
		notFound(w)
		return nil, "", false
	}
	name := pathValue(r, "name")
	if _, ok := vh.PlacementOf(name); !ok {
		writeError(w, http.StatusNotFound, "not_found", "no replicated queue '"+name+"' in vhost '"+vh.Name+"'")
		return nil, "", false
	}
	return vh, name, true
}

func (s *Server) memberResult(w http.ResponseWriter, err error) {
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
