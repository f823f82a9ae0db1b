package mgmt

import (
	"net/http"
	"strings"

	"github.com/warrenmq/warren/broker/vhost"
)

// Policies: GET /api/policies[/{vhost}[/{name}]], PUT and DELETE /api/policies/{vhost}/{name},
// with RabbitMQ's JSON: {"pattern", "apply-to", "priority", "definition"}.

func policyJSON(vh string, p vhost.Policy) obj {
	def := obj{}
	for k, v := range p.Definition {
		def[k] = v
	}
	return obj{"vhost": vh, "name": p.Name, "pattern": p.Pattern, "apply-to": p.ApplyTo, "priority": p.Priority, "definition": def}
}

func (s *Server) policies(w http.ResponseWriter, r *http.Request) {
	want := pathValue(r, "vhost")
	out := []obj{}
	for _, v := range s.visibleVHosts(r) {
		if want != "" && v.Name != want {
			continue
		}
		for _, p := range v.Policies() {
			out = append(out, policyJSON(v.Name, p))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) policy(w http.ResponseWriter, r *http.Request) {
	v := s.b.VHost(pathValue(r, "vhost"))
	if v == nil {
		notFound(w)
		return
	}
	name := pathValue(r, "name")
	for _, p := range v.Policies() {
		if p.Name == name {
			writeJSON(w, http.StatusOK, policyJSON(v.Name, p))
			return
		}
	}
	notFound(w)
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) {
	v := s.b.VHost(pathValue(r, "vhost"))
	if v == nil {
		notFound(w)
		return
	}
	var body obj
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	p := vhost.Policy{Name: pathValue(r, "name")}
	p.Pattern, _ = stringField(body, "pattern")
	p.ApplyTo, _ = stringField(body, "apply-to")
	pr, err := intField(body, "priority", 0)
	if err != nil {
		badRequest(w, "priority: %v", err)
		return
	}
	p.Priority = pr
	def, err := toTable(body["definition"])
	if err != nil {
		badRequest(w, "definition: %v", err)
		return
	}
	p.Definition = def
	existed := false
	for _, old := range v.Policies() {
		existed = existed || old.Name == p.Name
	}
	if err := v.SetPolicy(p); err != nil {
		badRequest(w, "%v", strings.TrimPrefix(err.Error(), "vhost: "))
		return
	}
	created(w, existed)
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) {
	v := s.b.VHost(pathValue(r, "vhost"))
	if v == nil {
		notFound(w)
		return
	}
	ok, err := v.DeletePolicy(pathValue(r, "name"))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, obj{"error": "internal_server_error", "reason": err.Error()})
		return
	}
	if !ok {
		notFound(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
