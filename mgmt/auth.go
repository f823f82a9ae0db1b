package mgmt

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"slices"
)

type level uint8

const (
	levelMonitor level = iota // any management tag
	levelAdmin                // administrator
)

type ctxKey struct{}

// principal is the authenticated user of a request.
type principal struct {
	name string
	tags []string
}

func userOf(r *http.Request) principal {
	p, _ := r.Context().Value(ctxKey{}).(principal)
	return p
}

// mgmtTags are the user tags RabbitMQ lets into the management API.
var mgmtTags = []string{"management", "policymaker", "monitoring", "administrator"}

// auth checks HTTP basic credentials against the broker's users: 401 (with WWW-Authenticate)
// without or with bad credentials, 403 when the user lacks a tag for the endpoint.
func (s *Server) auth(need level, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, pass, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		tags, ok := s.b.CheckUser(name, pass, remoteAddr(r))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
			writeError(w, http.StatusUnauthorized, "not_authorized", "Login failed")
			return
		}
		allowed := false
		for _, t := range tags {
			if slices.Contains(mgmtTags, t) {
				allowed = true
			}
		}
		if !allowed {
			writeError(w, http.StatusForbidden, "not_authorized", "Not management user")
			return
		}
		if need == levelAdmin && !slices.Contains(tags, "administrator") {
			writeError(w, http.StatusForbidden, "not_authorized", "Not administrator user")
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, principal{name: name, tags: tags})))
	})
}

// remoteAddr returns the client's address for the loopback-only check of users like guest.
func remoteAddr(r *http.Request) net.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	p := userOf(r)
	tags := p.tags
	if tags == nil {
		tags = []string{}
	}
	writeJSON(w, http.StatusOK, obj{"name": p.name, "tags": tags})
}
