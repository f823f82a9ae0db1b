package mgmt

import (
	"net"
	"net/http"
	"strconv"

	"github.com/warrenmq/warren/broker/session"
)

func splitHostPort(addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func (s *Server) connectionJSON(c *session.Conn) obj {
	frameMax, channelMax, heartbeat := c.Tuning()
	peerHost, peerPort := splitHostPort(c.Remote())
	host, port := splitHostPort(c.LocalAddr())
	rt := s.rates.rates(c, connLen)
	props := tableJSON(c.ClientProperties())
	return obj{
		"name": c.Name(), "node": s.cfg.Node, "vhost": c.VHostName(), "user": c.User(),
		"user_who_performed_action": c.User(),
		"protocol":                  "AMQP 0-9-1", "type": "network", "state": "running", "ssl": false,
		"host": host, "port": port, "peer_host": peerHost, "peer_port": peerPort,
		"channels": len(c.Channels()), "channel_max": channelMax, "frame_max": frameMax,
		"timeout": heartbeat, "client_properties": props, "auth_mechanism": "PLAIN",
		"connected_at": c.ConnectedAt().UnixMilli(),
		"recv_oct":     c.RecvBytes.Load(), "recv_oct_details": details(rt[connRecv]),
		"send_oct": c.SentBytes.Load(), "send_oct_details": details(rt[connSend]),
		"peer_cert_issuer": nil, "peer_cert_subject": nil, "peer_cert_validity": nil,
		"ssl_protocol": nil, "ssl_cipher": nil, "ssl_hash": nil, "ssl_key_exchange": nil,
	}
}

func (s *Server) findConn(name string) *session.Conn {
	for _, c := range s.b.Connections() {
		if c.Name() == name {
			return c
		}
	}
	return nil
}

func (s *Server) connections(w http.ResponseWriter, r *http.Request) {
	vh := pathValue(r, "vhost")
	items := []obj{}
	for _, c := range s.b.Connections() {
		if (vh == "" || c.VHostName() == vh) && canSeeConn(r, c) {
			items = append(items, s.connectionJSON(c))
		}
	}
	writeList(w, r, append(items, s.peerItems(r)...))
}

func (s *Server) connection(w http.ResponseWriter, r *http.Request) {
	c := s.findConn(pathValue(r, "name"))
	if c == nil && s.onPeer(w, r) {
		return
	}
	if c == nil || !canSeeConn(r, c) {
		notFound(w)
		return
	}
	writeObj(w, r, s.connectionJSON(c))
}

// closeConnection is DELETE /api/connections/{name}: connection.close 320 CONNECTION_FORCED
// with the X-Reason header's text, as RabbitMQ. Only an administrator or the connection's own
// user may close it (RabbitMQ: 401 "User not authorised to access object", monitoring users
// included, who may see every connection).
func (s *Server) closeConnection(w http.ResponseWriter, r *http.Request) {
	c := s.findConn(pathValue(r, "name"))
	if c == nil && s.onPeer(w, r) {
		return
	}
	if c == nil {
		notFound(w)
		return
	}
	if !isAdmin(r) && c.User() != userOf(r).name {
		writeError(w, http.StatusUnauthorized, "not_authorised", "User not authorised to access object")
		return
	}
	reason := r.Header.Get("X-Reason")
	if reason == "" {
		reason = "Closed via management plugin"
	}
	c.Shutdown(reason)
	w.WriteHeader(http.StatusNoContent)
}

// consumerCounts maps each channel to its number of consumers (those of queues led on other
// nodes included).
func (s *Server) consumerCounts() map[*session.Channel]int {
	out := map[*session.Channel]int{}
	for _, c := range s.b.Connections() {
		for _, ch := range c.Channels() {
			out[ch] = len(ch.Consumers())
		}
	}
	return out
}

func channelName(ch *session.Channel) string {
	return ch.Conn().Name() + " (" + strconv.Itoa(int(ch.ID())) + ")"
}

func (s *Server) channelJSON(ch *session.Channel, consumers int) obj {
	c := ch.Conn()
	in := ch.Info()
	peerHost, peerPort := splitHostPort(c.Remote())
	st := ch.Stats().Snapshot()
	rt := s.rates.rates(ch, int(session.NumStats))
	ms := obj{}
	for k := range session.NumStats {
		ms[k.String()] = st[k]
		ms[k.String()+"_details"] = details(rt[k])
	}
	dg := st[session.StatDeliver] + st[session.StatDeliverNoAck] + st[session.StatGet] + st[session.StatGetNoAck]
	ms["deliver_get"] = dg
	ms["deliver_get_details"] = details(rt[session.StatDeliver] + rt[session.StatDeliverNoAck] + rt[session.StatGet] + rt[session.StatGetNoAck])
	return obj{
		"name": channelName(ch), "number": ch.ID(), "node": s.cfg.Node,
		"vhost": c.VHostName(), "user": c.User(), "user_who_performed_action": c.User(),
		"connection_details": obj{"name": c.Name(), "peer_host": peerHost, "peer_port": peerPort},
		"consumer_count":     consumers, "prefetch_count": in.Prefetch, "global_prefetch_count": in.GlobalPrefetch,
		"messages_unacknowledged": in.Unacked, "messages_unconfirmed": 0, "messages_uncommitted": 0,
		"acks_uncommitted": 0, "confirm": in.Confirm, "transactional": in.Tx, "state": "running",
		"pending_raft_commands": 0, "message_stats": ms,
	}
}

func (s *Server) channels(w http.ResponseWriter, r *http.Request) {
	vh, connName := pathValue(r, "vhost"), pathValue(r, "name")
	var conns []*session.Conn
	if connName != "" {
		c := s.findConn(connName)
		if c == nil || !canSeeConn(r, c) {
			notFound(w)
			return
		}
		conns = append(conns, c)
	} else {
		conns = s.b.Connections()
	}
	counts := s.consumerCounts()
	items := []obj{}
	for _, c := range conns {
		if (vh != "" && c.VHostName() != vh) || !canSeeConn(r, c) {
			continue
		}
		for _, ch := range c.Channels() {
			items = append(items, s.channelJSON(ch, counts[ch]))
		}
	}
	if connName == "" {
		items = append(items, s.peerItems(r)...)
	}
	writeList(w, r, items)
}

func (s *Server) channel(w http.ResponseWriter, r *http.Request) {
	name := pathValue(r, "name")
	counts := s.consumerCounts()
	for _, c := range s.b.Connections() {
		if !canSeeConn(r, c) {
			continue
		}
		for _, ch := range c.Channels() {
			if channelName(ch) == name {
				writeObj(w, r, s.channelJSON(ch, counts[ch]))
				return
			}
		}
	}
	if !s.onPeer(w, r) {
		notFound(w)
	}
}

func (s *Server) consumerJSON(vh string, ci session.ConsumerInfo) obj {
	c := ci.Channel.Conn()
	peerHost, peerPort := splitHostPort(c.Remote())
	return obj{
		"consumer_tag": ci.Tag, "queue": obj{"name": ci.Queue, "vhost": vh},
		"channel_details": obj{
			"name": channelName(ci.Channel), "number": ci.Channel.ID(), "connection_name": c.Name(),
			"node": s.cfg.Node, "peer_host": peerHost, "peer_port": peerPort, "user": c.User(),
		},
		"ack_required": ci.AckRequired, "prefetch_count": ci.Prefetch, "exclusive": ci.Exclusive,
		"active": true, "activity_status": "up", "arguments": obj{},
	}
}

func (s *Server) consumers(w http.ResponseWriter, r *http.Request) {
	vhs, ok := s.vhostsFor(w, r)
	if !ok {
		return
	}
	// From the channels (a consumer lives on its client's node, whichever node leads its
	// queue), then from the other members.
	in := map[string]bool{}
	for _, vh := range vhs {
		in[vh.Name] = true
	}
	items := []obj{}
	for _, c := range s.b.Connections() {
		if !in[c.VHostName()] {
			continue
		}
		for _, ch := range c.Channels() {
			for _, ci := range ch.Consumers() {
				items = append(items, s.consumerJSON(c.VHostName(), ci))
			}
		}
	}
	items = append(items, s.peerItems(r)...)
	if r.URL.Query().Get("sort") == "" {
		q := r.URL.Query()
		q.Set("sort", "consumer_tag")
		r.URL.RawQuery = q.Encode()
	}
	writeList(w, r, items)
}
