package mgmt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/broker/vhost"
)

// exportDefinitions is GET /api/definitions[/{vhost}] in RabbitMQ's format: users, vhosts,
// permissions, queues (not exclusive ones), exchanges (not the default or amq.* ones) and
// bindings (not the default exchange's).
func (s *Server) exportDefinitions(w http.ResponseWriter, r *http.Request) {
	vhs, ok := s.vhostsFor(w, r)
	if !ok {
		return
	}
	queues, exchanges, bindings := []obj{}, []obj{}, []obj{}
	for _, vh := range vhs {
		for _, q := range vh.Queues() {
			if q.Exclusive {
				continue
			}
			queues = append(queues, obj{"name": q.Name, "vhost": vh.Name, "durable": q.Durable, "auto_delete": q.AutoDelete, "arguments": tableJSON(q.Args)})
		}
		for _, x := range vh.Exchanges() {
			if x.Name == "" || strings.HasPrefix(x.Name, "amq.") {
				continue
			}
			exchanges = append(exchanges, obj{"name": x.Name, "vhost": vh.Name, "type": x.Type, "durable": x.Durable, "auto_delete": x.AutoDelete, "internal": x.Internal, "arguments": tableJSON(x.Args)})
		}
		for _, b := range vh.Bindings() {
			if b.Source == "" {
				continue
			}
			if q := vh.Queue(b.Destination); !b.DestIsExchange && q != nil && q.Exclusive {
				continue
			}
			o := bindingJSON(vh, b)
			delete(o, "properties_key")
			bindings = append(bindings, o)
		}
	}
	sortBy := func(items []obj, keys ...string) {
		sortObjs(items, keys)
	}
	sortBy(queues, "vhost", "name")
	sortBy(exchanges, "vhost", "name")
	sortBy(bindings, "vhost", "source", "destination", "routing_key")
	out := obj{
		"rabbit_version": CompatVersion, "rabbitmq_version": CompatVersion,
		"product_name": "Warren", "product_version": broker.Version,
		"queues": queues, "exchanges": exchanges, "bindings": bindings,
	}
	if pathValue(r, "vhost") == "" {
		d := s.b.ExportDefinitions()
		out["users"], out["vhosts"], out["permissions"] = d.Users, d.VHosts, d.Permissions
		out["topic_permissions"], out["parameters"] = d.TopicPermissions, d.Parameters
		out["global_parameters"], out["policies"] = []obj{}, []obj{}
	} else {
		out["parameters"], out["policies"] = []obj{}, []obj{}
	}
	if r.URL.Query().Has("download") {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", r.URL.Query().Get("download")))
	}
	writeJSON(w, http.StatusOK, out)
}

func sortObjs(items []obj, keys []string) {
	less := func(a, b obj) bool {
		for _, k := range keys {
			x, y := fmt.Sprint(a[k]), fmt.Sprint(b[k])
			if x != y {
				return x < y
			}
		}
		return false
	}
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && less(items[j], items[j-1]); j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
}

// topology is the part of RabbitMQ's definitions file the broker's LoadDefinitions leaves out.
type topology struct {
	Queues []struct {
		Name       string `json:"name"`
		VHost      string `json:"vhost"`
		Durable    bool   `json:"durable"`
		AutoDelete bool   `json:"auto_delete"`
		Arguments  obj    `json:"arguments"`
	} `json:"queues"`
	Exchanges []struct {
		Name       string `json:"name"`
		VHost      string `json:"vhost"`
		Type       string `json:"type"`
		Durable    bool   `json:"durable"`
		AutoDelete bool   `json:"auto_delete"`
		Internal   bool   `json:"internal"`
		Arguments  obj    `json:"arguments"`
	} `json:"exchanges"`
	Bindings []struct {
		Source          string `json:"source"`
		VHost           string `json:"vhost"`
		Destination     string `json:"destination"`
		DestinationType string `json:"destination_type"`
		RoutingKey      string `json:"routing_key"`
		Arguments       obj    `json:"arguments"`
	} `json:"bindings"`
}

// importDefinitions is POST /api/definitions[/{vhost}]: users, vhosts, permissions and limits
// through the broker's LoadDefinitions (not for a single vhost), then exchanges, queues and
// bindings (into the URL's vhost when given). Like RabbitMQ, it adds and replaces and never
// deletes; errors are reported as 400 after importing what could be.
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
	var t topology
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&t); err != nil {
		badRequest(w, "definitions: %v", err)
		return
	}
	only := pathValue(r, "vhost")
	if only != "" && s.b.VHost(only) == nil {
		notFound(w)
		return
	}
	var problems []string
	if only == "" {
		d, err := broker.ReadDefinitions(bytes.NewReader(data))
		if err == nil {
			err = s.b.LoadDefinitions(d)
		}
		if err != nil {
			problems = append(problems, strings.TrimPrefix(err.Error(), "broker: "))
		}
	}
	lookup := func(name string) *vhost.VHost {
		if only != "" {
			name = only
		}
		vh := s.b.VHost(name)
		if vh == nil {
			problems = append(problems, fmt.Sprintf("vhost '%s' does not exist", name))
		}
		return vh
	}
	for _, x := range t.Exchanges {
		if vh := lookup(x.VHost); vh != nil {
			args, _ := toTable(x.Arguments)
			if _, err := vh.DeclareExchange(vhost.ExchangeDecl{Name: x.Name, Type: x.Type, Durable: x.Durable, AutoDelete: x.AutoDelete, Internal: x.Internal, Args: args}); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	for _, q := range t.Queues {
		if vh := lookup(q.VHost); vh != nil {
			args, _ := toTable(q.Arguments)
			if _, _, err := vh.DeclareQueue(vhost.QueueDecl{Name: q.Name, Durable: q.Durable, AutoDelete: q.AutoDelete, Args: args}); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	for _, b := range t.Bindings {
		vh := lookup(b.VHost)
		if vh == nil {
			continue
		}
		args, _ := toTable(b.Arguments)
		var err error
		if b.DestinationType == "exchange" {
			err = vh.BindExchange(b.Destination, b.Source, b.RoutingKey, args)
		} else {
			var owner any
			if q := vh.Queue(b.Destination); q != nil {
				owner = q.Owner
			}
			err = vh.BindQueue(b.Destination, b.Source, b.RoutingKey, args, owner)
		}
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		badRequest(w, "%s", strings.Join(problems, "; "))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
