package mgmt

import (
	"errors"
	"net/http"
	"slices"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/session"
	"github.com/warrenmq/warren/broker/vhost"
)

// Writes to a vhost's exchanges, queues and bindings apply the same configure/write/read and
// topic permissions as the AMQP methods they stand for, with the answers of RabbitMQ's
// management plugin (which performs them over an AMQP channel as the signed-in user):
//
//	PUT/DELETE exchange              configure on the exchange
//	PUT/DELETE queue                 configure on the queue
//	DELETE queue contents (purge)    read on the queue
//	POST queue get                   read on the queue
//	POST exchange publish            write on the exchange, topic write on the routing key
//	POST/DELETE binding              write on the destination, read on the source (topic
//	                                 read on the routing key)
//
// A vhost that does not exist answers 404; a vhost in which a user other than an
// administrator has no permissions at all, 401 "User not authorised to access virtual host";
// a refused operation 401 "Access refused.", except publish (400 with the AMQP error text,
// "403 ACCESS_REFUSED - ...") and get (401 with the AMQP error text) by a user who does have
// permissions in the vhost, as RabbitMQ 3.10.

// isAdmin reports whether the request's user is tagged administrator.
func isAdmin(r *http.Request) bool {
	return slices.Contains(userOf(r).tags, "administrator")
}

// hasVHostAccess reports whether user has a permission entry (even an empty one) in vh.
func (s *Server) hasVHostAccess(user, vh string) bool {
	for _, p := range s.b.Permissions() {
		if p.User == user && p.VHost == vh {
			return true
		}
	}
	return false
}

// writeVHost returns the {vhost} of a write request: 404 when it does not exist, 401 when the
// user (not an administrator) has no permissions in it.
func (s *Server) writeVHost(w http.ResponseWriter, r *http.Request) *vhost.VHost {
	vh := s.b.VHost(pathValue(r, "vhost"))
	if vh == nil {
		notFound(w)
		return nil
	}
	if !isAdmin(r) && !s.hasVHostAccess(userOf(r).name, vh.Name) {
		writeError(w, http.StatusUnauthorized, "not_authorised", "User not authorised to access virtual host")
		return nil
	}
	return vh
}

// refusal is how a route answers a refused permission.
type refusal uint8

const (
	refuseAccess  refusal = iota // 401 "Access refused."
	refuseGet                    // 401 with the AMQP error text
	refusePublish                // 400 with the AMQP error text and code
)

// permit checks the request's user for perm on a resource of vh and answers a refusal as
// RabbitMQ does. It reports whether the operation may go on.
func (s *Server) permit(w http.ResponseWriter, r *http.Request, how refusal, vh *vhost.VHost, perm session.Perm, kind session.ResourceKind, name, routingKey string) bool {
	err := s.b.Authorize(userOf(r).name, vh.Name, perm, kind, name, routingKey)
	if err == nil {
		return true
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return false
	}
	if !s.hasVHostAccess(userOf(r).name, vh.Name) {
		how = refuseAccess // an administrator without permissions: refused at connection.open
	}
	switch how {
	case refusePublish:
		writeError(w, http.StatusBadRequest, "bad_request", "403 "+ae.Text)
	case refuseGet:
		writeError(w, http.StatusUnauthorized, "not_authorised", ae.Text)
	default:
		writeError(w, http.StatusUnauthorized, "not_authorised", "Access refused.")
	}
	return false
}
