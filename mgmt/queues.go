package mgmt

import (
	"encoding/base64"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/queue"
	"github.com/warrenmq/warren/broker/session"
	"github.com/warrenmq/warren/broker/vhost"
)

func queueVector(q *queue.Queue) []float64 {
	in := q.Info()
	st := q.Stats()
	v := make([]float64, qLen)
	del, gets := float64(st.Delivered.Load()), float64(st.Gets.Load())
	v[qPublish] = float64(st.Published.Load())
	v[qDeliver] = del
	v[qGet] = gets
	v[qDeliverGet] = del + gets
	v[qAck] = float64(st.Acked.Load())
	v[qRedeliver] = float64(st.Redelivered.Load())
	v[qReady] = float64(in.Ready)
	v[qUnacked] = float64(in.Unacked)
	v[qMessages] = float64(in.Ready + in.Unacked)
	return v
}

// remoteQueue is the Ref of a queue homed on another cluster node (broker/remote).
type remoteQueue interface {
	Home() string
	Figures() (queue.Figures, error)
}

// qview is what a queue's JSON shows of where it lives and what it holds.
type qview struct {
	f     queue.Figures
	node  string
	state string
	local bool // homed here: its rates are this node's samples
}

// view returns q's figures: its own, or for a queue homed on another node its home's, asked
// at once (as a passive declare's counts, so they agree); state "down" when the home does not
// answer, as RabbitMQ shows a classic queue whose node is down.
func (s *Server) view(vh *vhost.VHost, q *queue.Queue) qview {
	rq, ok := vh.Ref(q).(remoteQueue)
	if !ok {
		return qview{f: q.Figures(), node: s.cfg.Node, state: "running", local: true}
	}
	f, err := rq.Figures()
	if err != nil {
		return qview{node: rq.Home(), state: "down"}
	}
	return qview{f: f, node: rq.Home(), state: "running"}
}

// views returns the views of qs, asking the homes of remote queues in parallel.
func (s *Server) views(vh *vhost.VHost, qs []*queue.Queue) []qview {
	out := make([]qview, len(qs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, q := range qs {
		if _, ok := vh.Ref(q).(remoteQueue); !ok {
			out[i] = s.view(vh, q)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = s.view(vh, q)
		}()
	}
	wg.Wait()
	return out
}

// queueJSON renders a queue as GET /api/queues does.
func (s *Server) queueJSON(vh *vhost.VHost, q *queue.Queue, v qview) obj {
	in := v.f.Info
	st := &v.f
	var rt []float64
	if v.local {
		rt = s.rates.rates(q, qLen)
	} else {
		rt = make([]float64, qLen) // sampled where the queue lives
	}
	del, gets := st.Delivered, st.Gets
	o := obj{
		"name": q.Name, "vhost": vh.Name, "node": v.node,
		"durable": q.Durable, "auto_delete": q.AutoDelete, "exclusive": q.Exclusive,
		"arguments": tableJSON(q.Args), "type": queueType(q), "state": v.state,
		"policy": policyName(vh.QueuePolicy(q)), "operator_policy": nil, "effective_policy_definition": s.effectivePolicy(vh, q),
		"encrypted":              q.Durable && !q.Exclusive && s.b.QueueEncrypted(vh.Name, q.Name),
		"duplicates_dropped":     st.Duplicates,
		"exclusive_consumer_tag": nil, "single_active_consumer_tag": nil, "head_message_timestamp": nil,
		"consumers":                       in.Consumers,
		"messages":                        in.Ready + in.Unacked,
		"messages_details":                details(rt[qMessages]),
		"messages_ready":                  in.Ready,
		"messages_ready_details":          details(rt[qReady]),
		"messages_unacknowledged":         in.Unacked,
		"messages_unacknowledged_details": details(rt[qUnacked]),
		"messages_ram":                    in.Ready - in.PagedOut + in.Unacked,
		"messages_ready_ram":              in.Ready - in.PagedOut,
		"messages_unacknowledged_ram":     in.Unacked,
		"messages_paged_out":              in.PagedOut,
		"messages_persistent":             0,
		"message_bytes":                   in.ReadyBytes, // unacked bytes are not tracked yet
		"message_bytes_ready":             in.ReadyBytes,
		"message_bytes_unacknowledged":    0,
		"message_bytes_ram":               in.ReadyBytes - in.PagedOutBytes,
		"message_bytes_paged_out":         in.PagedOutBytes,
		"memory":                          in.Memory,
		"message_stats": obj{
			"publish": st.Published, "publish_details": details(rt[qPublish]),
			"deliver_get": del + gets, "deliver_get_details": details(rt[qDeliverGet]),
			"deliver": del, "deliver_details": details(rt[qDeliver]),
			"get": gets, "get_details": details(rt[qGet]),
			"ack": st.Acked, "ack_details": details(rt[qAck]),
			"redeliver": st.Redelivered, "redeliver_details": details(rt[qRedeliver]),
		},
	}
	if p, ok := vh.PlacementOf(q.Name); ok {
		// A replicated queue, as RabbitMQ reports a quorum queue: its leader, members and
		// the members that are up.
		o["node"], o["leader"], o["members"] = p.Leader, p.Leader, p.Replicas
		online := []string{}
		if s.cfg.Cluster != nil {
			up := map[string]bool{}
			for _, m := range s.cfg.Cluster.Members() {
				up[m.Name] = m.Status == "alive"
			}
			for _, r := range p.Replicas {
				if up[r] {
					online = append(online, r)
				}
			}
		}
		o["online"] = online
	}
	if in.Consumers > 0 {
		o["consumer_utilisation"] = nil
	}
	if q.IsStream() { // a stream's messages are its retained log
		n := st.StreamNext - st.StreamFirst
		o["messages"], o["messages_ready"], o["message_bytes"] = n, n, st.StreamBytes
	}
	return o
}

// queueType is RabbitMQ's queue type name.
func queueType(q *queue.Queue) string {
	switch {
	case q.IsStream():
		return "stream"
	case q.Args["x-queue-type"] == "quorum":
		return "quorum"
	}
	return "classic"
}

// policyName is the "policy" field: null without one.
func policyName(name string) any {
	if name == "" {
		return nil
	}
	return name
}

// effectivePolicy is the definition of the queue's policy ({} without one).
func (s *Server) effectivePolicy(vh *vhost.VHost, q *queue.Queue) obj {
	name := vh.QueuePolicy(q)
	for _, p := range vh.Policies() {
		if p.Name == name {
			d := obj{}
			for k, v := range p.Definition {
				d[k] = v
			}
			return d
		}
	}
	return obj{}
}

// vhostParam returns the {vhost} path value's vhost, writing 404 when it does not exist.
func (s *Server) vhostParam(w http.ResponseWriter, r *http.Request) *vhost.VHost {
	vh := s.b.VHost(pathValue(r, "vhost"))
	if vh == nil || !s.canSeeVHost(r, vh.Name) {
		notFound(w)
		return nil
	}
	return vh
}

// vhostsFor returns the {vhost} path value's vhost, or every vhost when there is none.
func (s *Server) vhostsFor(w http.ResponseWriter, r *http.Request) ([]*vhost.VHost, bool) {
	if pathValue(r, "vhost") == "" {
		return s.visibleVHosts(r), true
	}
	vh := s.vhostParam(w, r)
	if vh == nil {
		return nil, false
	}
	return []*vhost.VHost{vh}, true
}

func (s *Server) queues(w http.ResponseWriter, r *http.Request) {
	vhs, ok := s.vhostsFor(w, r)
	if !ok {
		return
	}
	items := []obj{}
	for _, vh := range vhs {
		qs := vh.Queues()
		for i, v := range s.views(vh, qs) {
			items = append(items, s.queueJSON(vh, qs[i], v))
		}
	}
	writeList(w, r, items)
}

func (s *Server) queueParam(w http.ResponseWriter, r *http.Request) (*vhost.VHost, *queue.Queue) {
	return s.queueIn(w, r, s.vhostParam(w, r))
}

// writeQueue is queueParam for a write: the vhost is checked with writeVHost.
func (s *Server) writeQueue(w http.ResponseWriter, r *http.Request) (*vhost.VHost, *queue.Queue) {
	return s.queueIn(w, r, s.writeVHost(w, r))
}

// queueIn returns the {name} queue of vh (404 when missing; nil vh: already answered).
func (s *Server) queueIn(w http.ResponseWriter, r *http.Request, vh *vhost.VHost) (*vhost.VHost, *queue.Queue) {
	if vh == nil {
		return nil, nil
	}
	q := vh.Queue(pathValue(r, "name"))
	if q == nil {
		notFound(w)
		return nil, nil
	}
	return vh, q
}

func (s *Server) queue(w http.ResponseWriter, r *http.Request) {
	vh, q := s.queueParam(w, r)
	if q == nil {
		return
	}
	o := s.queueJSON(vh, q, s.view(vh, q))
	cds := []obj{}
	for _, ref := range q.ConsumerList() {
		if ci, ok := session.DescribeConsumer(ref.Consumer); ok {
			cds = append(cds, s.consumerJSON(vh.Name, ci))
		}
	}
	o["consumer_details"] = cds
	o["incoming"] = []obj{}
	o["deliveries"] = []obj{}
	writeObj(w, r, o)
}

func (s *Server) declareQueue(w http.ResponseWriter, r *http.Request) {
	vh := s.writeVHost(w, r)
	if vh == nil || !s.permit(w, r, refuseAccess, vh, session.PermConfigure, session.KindQueue, pathValue(r, "name"), "") {
		return
	}
	var body obj
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	durable, err := boolField(body, "durable", false)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	autoDelete, err := boolField(body, "auto_delete", false)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	args, err := toTable(body["arguments"])
	if err != nil {
		badRequest(w, "arguments: %v", err)
		return
	}
	name := pathValue(r, "name")
	if name == "" {
		badRequest(w, "queue name required")
		return
	}
	_, isNew, err := vh.DeclareQueue(vhost.QueueDecl{Name: name, Durable: durable, AutoDelete: autoDelete, Args: args})
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	created(w, !isNew)
}

func (s *Server) deleteQueue(w http.ResponseWriter, r *http.Request) {
	vh, q := s.writeQueue(w, r)
	if q == nil || !s.permit(w, r, refuseAccess, vh, session.PermConfigure, session.KindQueue, q.Name, "") {
		return
	}
	qp := r.URL.Query()
	if _, err := vh.DeleteQueue(q.Name, qp.Get("if-unused") == "true", qp.Get("if-empty") == "true", q.Owner); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) purgeQueue(w http.ResponseWriter, r *http.Request) {
	vh, q := s.writeQueue(w, r)
	if q == nil || !s.permit(w, r, refuseAccess, vh, session.PermRead, session.KindQueue, q.Name, "") {
		return
	}
	if _, err := vh.Ref(q).Purge(); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// getMessages is POST /api/queues/{vhost}/{name}/get: fetch up to count messages, then requeue
// them (ack_requeue_true, reject_requeue_true) or drop them (ack_requeue_false,
// reject_requeue_false), as RabbitMQ's management "Get messages" does over a basic.get channel.
func (s *Server) getMessages(w http.ResponseWriter, r *http.Request) {
	vh, q := s.writeQueue(w, r)
	if q == nil || !s.permit(w, r, refuseGet, vh, session.PermRead, session.KindQueue, q.Name, "") {
		return
	}
	var body obj
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	count, err := intField(body, "count", 1)
	if err != nil || count < 0 {
		badRequest(w, "count: not an integer")
		return
	}
	mode, _ := stringField(body, "ackmode")
	var requeue bool
	switch mode {
	case "ack_requeue_true", "reject_requeue_true":
		requeue = true
	case "ack_requeue_false", "reject_requeue_false":
	default:
		badRequest(w, "ackmode: %q is not one of ack_requeue_true, ack_requeue_false, reject_requeue_true, reject_requeue_false", mode)
		return
	}
	enc, _ := stringField(body, "encoding")
	if enc == "" {
		enc = "auto"
	}
	if enc != "auto" && enc != "base64" {
		badRequest(w, "encoding: %q is not one of auto, base64", enc)
		return
	}
	truncate, err := intField(body, "truncate", -1)
	if err != nil {
		badRequest(w, "truncate: not an integer")
		return
	}
	items := []obj{}
	ref := vh.Ref(q)
	var taken []queue.Entry
	for range count {
		e, remaining, ok, err := ref.Get(false)
		if err != nil || !ok {
			break
		}
		taken = append(taken, e)
		payload := e.Msg.Body
		if truncate >= 0 && len(payload) > truncate {
			payload = payload[:truncate]
		}
		o := obj{
			"payload_bytes": len(e.Msg.Body), "redelivered": e.Redelivered,
			"exchange": e.Msg.Exchange, "routing_key": e.Msg.RoutingKey, "message_count": remaining,
			"properties": propertiesJSON(e.Msg.RawProps),
		}
		if enc == "auto" && utf8.Valid(payload) {
			o["payload"], o["payload_encoding"] = string(payload), "string"
		} else {
			o["payload"], o["payload_encoding"] = base64.StdEncoding.EncodeToString(payload), "base64"
		}
		items = append(items, o)
	}
	if len(taken) > 0 {
		st := s.b.Stats()
		st.Add(session.StatGet, uint64(len(taken)))
		how := queue.SettleAck // reject_requeue_false too: dropped, not dead-lettered
		if requeue {
			how = queue.SettleRequeue
		}
		ref.Settle(taken, how)
	}
	writeJSON(w, http.StatusOK, items)
}

// propertiesJSON renders basic properties as RabbitMQ does: only those present.
func propertiesJSON(raw []byte) obj {
	out := obj{}
	p, err := amqp.DecodeProperties(raw)
	if err != nil {
		return out
	}
	f := p.Flags
	str := func(bit uint16, key, v string) {
		if f&bit != 0 {
			out[key] = v
		}
	}
	str(amqp.FlagContentType, "content_type", p.ContentType)
	str(amqp.FlagContentEncoding, "content_encoding", p.ContentEncoding)
	if f&amqp.FlagHeaders != 0 {
		out["headers"] = tableJSON(p.Headers)
	}
	if f&amqp.FlagDeliveryMode != 0 {
		out["delivery_mode"] = p.DeliveryMode
	}
	if f&amqp.FlagPriority != 0 {
		out["priority"] = p.Priority
	}
	str(amqp.FlagCorrelationID, "correlation_id", p.CorrelationID)
	str(amqp.FlagReplyTo, "reply_to", p.ReplyTo)
	str(amqp.FlagExpiration, "expiration", p.Expiration)
	str(amqp.FlagMessageID, "message_id", p.MessageID)
	if f&amqp.FlagTimestamp != 0 {
		out["timestamp"] = p.Timestamp.Unix()
	}
	str(amqp.FlagType, "type", p.Type)
	str(amqp.FlagUserID, "user_id", p.UserID)
	str(amqp.FlagAppID, "app_id", p.AppID)
	str(amqp.FlagClusterID, "cluster_id", p.ClusterID)
	return out
}
