package mgmt

import (
	"net/http"
	"slices"

	"github.com/warrenmq/warren/broker/session"
	"github.com/warrenmq/warren/broker/vhost"
)

// As RabbitMQ's management plugin: users tagged administrator or monitoring see every vhost and
// connection; users tagged only management (or policymaker) see the vhosts they have
// permissions in, and only their own connections and channels. Everything else answers 404.

// seesAll reports whether the request's user sees the whole node.
func seesAll(r *http.Request) bool {
	tags := userOf(r).tags
	return slices.Contains(tags, "administrator") || slices.Contains(tags, "monitoring")
}

// canSeeVHost reports whether the request's user may see the named vhost.
func (s *Server) canSeeVHost(r *http.Request, name string) bool {
	if seesAll(r) {
		return true
	}
	user := userOf(r).name
	for _, p := range s.b.Permissions() {
		if p.User == user && p.VHost == name {
			return true
		}
	}
	return false
}

// visibleVHosts returns the vhosts the request's user may see.
func (s *Server) visibleVHosts(r *http.Request) []*vhost.VHost {
	all := s.b.VHosts()
	if seesAll(r) {
		return all
	}
	out := all[:0]
	for _, vh := range all {
		if s.canSeeVHost(r, vh.Name) {
			out = append(out, vh)
		}
	}
	return out
}

// canSeeConn reports whether the request's user may see a connection.
func canSeeConn(r *http.Request, c *session.Conn) bool {
	return seesAll(r) || c.User() == userOf(r).name
}
