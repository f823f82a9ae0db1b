package mgmt

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/warrenmq/warren/broker"
)

// Vhost limits, user limits and topic permissions, as RabbitMQ's HTTP API:
//
//	GET    /api/vhost-limits[/{vhost}]            [{"vhost":"v","value":{"max-connections":10}}]
//	PUT    /api/vhost-limits/{vhost}/{name}       {"value": N} (max-connections, max-queues)
//	DELETE /api/vhost-limits/{vhost}/{name}
//	GET    /api/user-limits[/{user}]              [{"user":"u","value":{"max-channels":10}}]
//	PUT    /api/user-limits/{user}/{name}         {"value": N} (max-connections, max-channels)
//	DELETE /api/user-limits/{user}/{name}
//	GET    /api/topic-permissions, /api/topic-permissions/{vhost}/{user},
//	       /api/users/{user}/topic-permissions, /api/vhosts/{vhost}/topic-permissions
//	PUT    /api/topic-permissions/{vhost}/{user}  {"exchange","write","read"}
//	DELETE /api/topic-permissions/{vhost}/{user}  (all of the user's in the vhost)
//
// A limit of -1 is no limit; a limit that was never set is not listed.

// vhostLimitsJSON is one vhost's limits in RabbitMQ's shape (nil when it has none).
func vhostLimitsJSON(name string, l broker.VHostLimits) obj {
	v := obj{}
	if l.MaxConnections >= 0 {
		v["max-connections"] = l.MaxConnections
	}
	if l.MaxQueues >= 0 {
		v["max-queues"] = l.MaxQueues
	}
	if len(v) == 0 {
		return nil
	}
	return obj{"vhost": name, "value": v}
}

func (s *Server) vhostLimits(w http.ResponseWriter, r *http.Request) {
	only := pathValue(r, "vhost")
	if only != "" && s.b.VHost(only) == nil {
		notFound(w)
		return
	}
	items := []obj{}
	for _, v := range s.b.VHosts() {
		if only != "" && v.Name != only {
			continue
		}
		l, err := s.b.VHostLimitsOf(v.Name)
		if err != nil {
			continue
		}
		if o := vhostLimitsJSON(v.Name, l); o != nil {
			items = append(items, o)
		}
	}
	writeList(w, r, items)
}

// limitValue reads {"value": N} as RabbitMQ validates it.
func limitValue(r *http.Request, name string) (int, error) {
	var body obj
	if err := decodeBody(r, &body); err != nil {
		return 0, err
	}
	v, ok := body["value"]
	if !ok {
		return 0, fmt.Errorf("Validation failed\n\n%s should be a number, actually was undefined\n", name)
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("Validation failed\n\n%s should be a number, actually was %v\n", name, v)
	}
	i, err := strconv.Atoi(n.String())
	if err != nil {
		return 0, fmt.Errorf("Validation failed\n\n%s should be a number, actually was %v\n", name, v)
	}
	return i, nil
}

// setVHostLimit is PUT (set) and DELETE (clear, value -1) /api/vhost-limits/{vhost}/{name}.
func (s *Server) setVHostLimit(clear bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		vh, name := pathValue(r, "vhost"), pathValue(r, "name")
		l, err := s.b.VHostLimitsOf(vh)
		if err != nil {
			writeError(w, http.StatusNotFound, "not_found", "vhost_not_found")
			return
		}
		val := -1
		if !clear {
			if val, err = limitValue(r, name); err != nil {
				badRequest(w, "%v", err)
				return
			}
		}
		switch name {
		case "max-connections":
			l.MaxConnections = val
		case "max-queues":
			l.MaxQueues = val
		default:
			if clear {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			badRequest(w, "Validation failed\n\nUnrecognised terms [{<<\"%s\">>,%d}] in limits\n", name, val)
			return
		}
		if err := s.b.SetVHostLimits(vh, l); err != nil {
			storeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// userLimitsJSON is one user's limits in RabbitMQ's shape (nil when it has none).
func userLimitsJSON(u broker.User) obj {
	v := obj{}
	if u.Limits.MaxConnections >= 0 {
		v["max-connections"] = u.Limits.MaxConnections
	}
	if u.Limits.MaxChannels >= 0 {
		v["max-channels"] = u.Limits.MaxChannels
	}
	if len(v) == 0 {
		return nil
	}
	return obj{"user": u.Name, "value": v}
}

func (s *Server) userLimits(w http.ResponseWriter, r *http.Request) {
	only := pathValue(r, "user")
	if _, ok := s.b.User(only); only != "" && !ok {
		notFound(w)
		return
	}
	items := []obj{}
	for _, u := range s.b.Users() {
		if only != "" && u.Name != only {
			continue
		}
		if o := userLimitsJSON(u); o != nil {
			items = append(items, o)
		}
	}
	writeList(w, r, items)
}

// setUserLimit is PUT (set) and DELETE (clear) /api/user-limits/{user}/{name}.
func (s *Server) setUserLimit(clear bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, name := pathValue(r, "user"), pathValue(r, "name")
		u, ok := s.b.User(user)
		if !ok {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("no_such_user: %s", user))
			return
		}
		l := u.Limits
		val := -1
		if !clear {
			var err error
			if val, err = limitValue(r, name); err != nil {
				badRequest(w, "%v", err)
				return
			}
		}
		switch name {
		case "max-connections":
			l.MaxConnections = val
		case "max-channels":
			l.MaxChannels = val
		default:
			if clear {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			badRequest(w, "Unrecognised terms [{<<\"%s\">>,%d}] in user-limits", name, val)
			return
		}
		if err := s.b.SetUserLimits(user, l); err != nil {
			storeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// topicPermissionList returns the topic permissions matching vhost and user ("" matches any).
func (s *Server) topicPermissionList(vhost, user string) []obj {
	items := []obj{}
	for _, p := range s.b.TopicPermissions() {
		if (vhost == "" || p.VHost == vhost) && (user == "" || p.User == user) {
			items = append(items, obj{"user": p.User, "vhost": p.VHost, "exchange": p.Exchange, "write": p.Write, "read": p.Read})
		}
	}
	return items
}

// topicPermissions serves the four listing routes (by vhost and user from the path).
func (s *Server) topicPermissions(w http.ResponseWriter, r *http.Request) {
	vh, user := pathValue(r, "vhost"), pathValue(r, "user")
	if user == "" {
		user = pathValue(r, "name") // /api/users/{name}/topic-permissions
	}
	if vh != "" && s.b.VHost(vh) == nil {
		notFound(w)
		return
	}
	if _, ok := s.b.User(user); user != "" && !ok {
		notFound(w)
		return
	}
	items := s.topicPermissionList(vh, user)
	if len(items) == 0 && r.PathValue("vhost") != "" && r.PathValue("user") != "" {
		notFound(w) // /api/topic-permissions/{vhost}/{user} without any
		return
	}
	writeList(w, r, items)
}

func (s *Server) putTopicPermission(w http.ResponseWriter, r *http.Request) {
	var body obj
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	x, ok := stringField(body, "exchange")
	if !ok {
		badRequest(w, "[{key_missing,exchange}]")
		return
	}
	p := broker.TopicPermission{User: pathValue(r, "user"), VHost: pathValue(r, "vhost"), Exchange: x}
	p.Write, _ = stringField(body, "write")
	p.Read, _ = stringField(body, "read")
	existed := false
	for _, t := range s.b.TopicPermissions() {
		existed = existed || t.User == p.User && t.VHost == p.VHost && t.Exchange == x
	}
	if err := s.b.SetTopicPermissions(p); err != nil {
		storeError(w, err)
		return
	}
	created(w, existed)
}

func (s *Server) deleteTopicPermission(w http.ResponseWriter, r *http.Request) {
	vh, user := pathValue(r, "vhost"), pathValue(r, "user")
	if len(s.topicPermissionList(vh, user)) == 0 {
		notFound(w)
		return
	}
	if err := s.b.ClearTopicPermissions(vh, user, ""); err != nil {
		storeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
