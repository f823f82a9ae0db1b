package broker

import (
	"net"

	"github.com/warrenmq/warren/broker/session"
)

// Read-only accessors for the management API and metrics.

// Stats returns the node-wide message counters.
func (s *Server) Stats() *session.Stats { return s.env.Stats }

// Config returns the server's configuration with defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// CheckUser authenticates name/password for a client at remote (the same rules as AMQP,
// including loopback-only users) and returns the user's tags.
func (s *Server) CheckUser(name, password string, remote net.Addr) (tags []string, ok bool) {
	if ok, _ := s.users.Authenticate(name, password, remote); !ok {
		return nil, false
	}
	s.users.mu.RLock()
	defer s.users.mu.RUnlock()
	if u := s.users.users[name]; u != nil {
		return append([]string(nil), u.Tags...), true
	}
	return nil, false
}

// UserList returns copies of every user, sorted by name.
func (s *Server) UserList() []User { return s.users.List() }

// Authorize checks that user may perform perm on the named exchange or queue of vhost vh
// (and, for exchanges, the topic permission on routingKey), exactly as the AMQP path does:
// nil, or an *amqp.Error 403 ACCESS_REFUSED. The management API calls it on every write.
func (s *Server) Authorize(user, vh string, perm session.Perm, kind session.ResourceKind, name, routingKey string) error {
	return s.authorize(user, vh, perm, kind, name, routingKey)
}
