package mgmt

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/warrenmq/warren/broker"
)

// Users, vhosts and permissions: thin JSON over the broker's user and permission store.

func userJSON(u broker.User) obj {
	tags := u.Tags
	if tags == nil {
		tags = []string{}
	}
	alg := u.HashingAlgorithm
	if alg == "" {
		alg = broker.HashSHA256
	}
	limits := obj{}
	if u.Limits.MaxConnections >= 0 {
		limits["max-connections"] = u.Limits.MaxConnections
	}
	if u.Limits.MaxChannels >= 0 {
		limits["max-channels"] = u.Limits.MaxChannels
	}
	return obj{
		"name": u.Name, "password_hash": base64.StdEncoding.EncodeToString(u.PasswordHash),
		"hashing_algorithm": alg, "tags": tags, "limits": limits,
	}
}

func (s *Server) users(w http.ResponseWriter, r *http.Request) {
	items := []obj{}
	for _, u := range s.b.UserList() {
		items = append(items, userJSON(u))
	}
	writeList(w, r, items)
}

func (s *Server) user(w http.ResponseWriter, r *http.Request) {
	u, ok := s.b.User(pathValue(r, "name"))
	if !ok {
		notFound(w)
		return
	}
	writeObj(w, r, userJSON(u))
}

// putUser is PUT /api/users/{name} with {"password"|"password_hash", "tags": "a,b" or [...],
// "hashing_algorithm"}.
func (s *Server) putUser(w http.ResponseWriter, r *http.Request) {
	var body obj
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	name := pathValue(r, "name")
	_, existed := s.b.User(name)
	u := broker.User{Name: name, Tags: parseTags(body["tags"])}
	if pw, ok := stringField(body, "password"); ok {
		u.PasswordHash, u.HashingAlgorithm = broker.HashPassword(pw), broker.HashSHA256
	} else if h, ok := stringField(body, "password_hash"); ok {
		raw, err := base64.StdEncoding.DecodeString(h)
		if err != nil {
			badRequest(w, "password_hash: not base64")
			return
		}
		u.PasswordHash = raw
		u.HashingAlgorithm, _ = stringField(body, "hashing_algorithm")
	} else {
		badRequest(w, "[{key_missing,password_hash}]")
		return
	}
	if err := s.b.PutUser(u); err != nil {
		badRequest(w, "%v", strings.TrimPrefix(err.Error(), "broker: "))
		return
	}
	created(w, existed)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	if err := s.b.DeleteUser(pathValue(r, "name")); err != nil {
		notFound(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// created answers 201 for a new object, 204 for an updated one, as RabbitMQ's PUTs.
func created(w http.ResponseWriter, existed bool) {
	if existed {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// parseTags accepts RabbitMQ's two forms: "a,b" and ["a", "b"].
func parseTags(v any) []string {
	tags := []string{}
	switch x := v.(type) {
	case string:
		for _, t := range strings.Split(x, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	case []any:
		for _, t := range x {
			if s, ok := t.(string); ok && s != "" {
				tags = append(tags, s)
			}
		}
	}
	return tags
}

// putVHost is PUT /api/vhosts/{vhost}; like RabbitMQ, the creating user gets full permissions.
func (s *Server) putVHost(w http.ResponseWriter, r *http.Request) {
	name := pathValue(r, "vhost")
	existed := s.b.VHost(name) != nil
	if err := s.b.AddVHost(name); err != nil {
		badRequest(w, "%v", strings.TrimPrefix(err.Error(), "broker: "))
		return
	}
	if !existed {
		s.b.SetPermissions(broker.Permission{User: userOf(r).name, VHost: name, Configure: ".*", Write: ".*", Read: ".*"})
	}
	created(w, existed)
}

func (s *Server) deleteVHost(w http.ResponseWriter, r *http.Request) {
	if err := s.b.DeleteVHost(pathValue(r, "vhost")); err != nil {
		notFound(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func permissionJSON(p broker.Permission) obj {
	return obj{"user": p.User, "vhost": p.VHost, "configure": p.Configure, "write": p.Write, "read": p.Read}
}

// permissionList returns the permissions matching vhost and user ("" matches any).
func (s *Server) permissionList(vhost, user string) []obj {
	items := []obj{}
	for _, p := range s.b.Permissions() {
		if (vhost == "" || p.VHost == vhost) && (user == "" || p.User == user) {
			items = append(items, permissionJSON(p))
		}
	}
	return items
}

func (s *Server) permissions(w http.ResponseWriter, r *http.Request) {
	vh, user := pathValue(r, "vhost"), pathValue(r, "name")
	if vh != "" && s.b.VHost(vh) == nil {
		notFound(w)
		return
	}
	if _, ok := s.b.User(user); user != "" && !ok {
		notFound(w)
		return
	}
	writeList(w, r, s.permissionList(vh, user))
}

func (s *Server) permission(w http.ResponseWriter, r *http.Request) {
	items := s.permissionList(pathValue(r, "vhost"), pathValue(r, "user"))
	if len(items) == 0 {
		notFound(w)
		return
	}
	writeObj(w, r, items[0])
}

func (s *Server) putPermission(w http.ResponseWriter, r *http.Request) {
	var body obj
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	p := broker.Permission{User: pathValue(r, "user"), VHost: pathValue(r, "vhost")}
	p.Configure, _ = stringField(body, "configure")
	p.Write, _ = stringField(body, "write")
	p.Read, _ = stringField(body, "read")
	existed := len(s.permissionList(p.VHost, p.User)) > 0
	if err := s.b.SetPermissions(p); err != nil {
		storeError(w, err)
		return
	}
	created(w, existed)
}

func (s *Server) deletePermission(w http.ResponseWriter, r *http.Request) {
	if err := s.b.ClearPermissions(pathValue(r, "vhost"), pathValue(r, "user")); err != nil {
		storeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// storeError maps the user store's errors: missing user or vhost 404, others 400.
func storeError(w http.ResponseWriter, err error) {
	if errors.Is(err, broker.ErrNoUser) || errors.Is(err, broker.ErrNoVHost) {
		notFound(w)
		return
	}
	badRequest(w, "%v", strings.TrimPrefix(err.Error(), "broker: "))
}
