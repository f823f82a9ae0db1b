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
// without or with bad credentials, 403 when the user lacks a tag for the endpoint; then a
// write's content type (415 unless application/json, csrf.go).
func (s *Server) auth(need level, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, pass, ok := r.BasicAuth()
		if !ok {
			challenge(w, r)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		tags, ok := s.b.CheckUser(name, pass, remoteAddr(r))
		if !ok {
			challenge(w, r)
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
		if !jsonBody(w, r) {
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, principal{name: name, tags: tags})))
	})
}

// challenge asks for Basic credentials (WWW-Authenticate), as RabbitMQ does, except on the
// dashboard's own requests (X-Requested-With: XMLHttpRequest): a challenge there would make
// the browser prompt for a password and then cache it for the origin, attaching it to every
// later request to the API, other sites' included.
func challenge(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Requested-With") != "XMLHttpRequest" {
		w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
	}
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
