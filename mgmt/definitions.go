package mgmt

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/warrenmq/warren/broker"
)

// exportDefinitions is GET /api/definitions[/{vhost}] in RabbitMQ's format: users, vhosts,
// permissions, topic permissions, parameters, policies, queues (not exclusive ones), exchanges
// (not the default or amq.* ones) and bindings (not the default exchange's); for one vhost,
// its parameters, policies, queues, exchanges and bindings, without their "vhost" field.
func (s *Server) exportDefinitions(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.vhostsFor(w, r); !ok { // 404 for a missing vhost
		return
	}
	d := s.b.ExportDefinitions()
	out := obj{
		"rabbit_version": CompatVersion, "rabbitmq_version": CompatVersion,
		"product_name": "Warren", "product_version": broker.Version,
	}
	if one := pathValue(r, "vhost"); one != "" {
		params, policies := []broker.DefParameter{}, []broker.DefPolicy{}
		queues, exchanges, bindings := []broker.DefQueue{}, []broker.DefExchange{}, []broker.DefBinding{}
		for _, p := range d.Parameters {
			if p.VHost == one {
				p.VHost = ""
				params = append(params, p)
			}
		}
		for _, p := range d.Policies {
			if p.VHost == one {
				p.VHost = ""
				policies = append(policies, p)
			}
		}
		for _, q := range d.Queues {
			if q.VHost == one {
				q.VHost = ""
				queues = append(queues, q)
			}
		}
		for _, x := range d.Exchanges {
			if x.VHost == one {
				x.VHost = ""
				exchanges = append(exchanges, x)
			}
		}
		for _, b := range d.Bindings {
			if b.VHost == one {
				b.VHost = ""
				bindings = append(bindings, b)
			}
		}
		out["parameters"], out["policies"] = params, policies
		out["queues"], out["exchanges"], out["bindings"] = queues, exchanges, bindings
	} else {
		out["users"], out["vhosts"], out["permissions"] = d.Users, d.VHosts, d.Permissions
		out["topic_permissions"], out["parameters"] = d.TopicPermissions, d.Parameters
		out["global_parameters"], out["policies"] = d.GlobalParameters, d.Policies
		out["queues"], out["exchanges"], out["bindings"] = d.Queues, d.Exchanges, d.Bindings
	}
	if r.URL.Query().Has("download") {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", r.URL.Query().Get("download")))
	}
	writeJSON(w, http.StatusOK, out)
}

// importDefinitions is POST /api/definitions[/{vhost}]: everything RabbitMQ's import takes
// (users, vhosts, permissions, topic permissions, limits, policies, queues, exchanges,
// bindings) through the broker's ImportDefinitions; for one vhost, its parameters, policies,
// queues, exchanges and bindings, into that vhost. Like RabbitMQ, it adds and replaces and
// never deletes; errors are reported as 400 after importing what could be.
func (s *Server) importDefinitions(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "multipart/form-data") || strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		r.Body = io.NopCloser(bytes.NewReader(data))
		if f := r.FormValue("file"); f != "" {
			data = []byte(f)
		}
	}
	d, err := broker.ReadDefinitions(bytes.NewReader(data))
	if err != nil {
		badRequest(w, "%s", strings.TrimPrefix(err.Error(), "broker: "))
		return
	}
	only := pathValue(r, "vhost")
	if only != "" && s.b.VHost(only) == nil {
		notFound(w)
		return
	}
	if err := s.b.ImportDefinitions(d, only); err != nil {
		badRequest(w, "%s", strings.ReplaceAll(strings.ReplaceAll(err.Error(), "broker: ", ""), "\n", "; "))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
