package mgmt

import (
	"encoding/base64"
	"hash/fnv"
	"net/http"
	"net/url"
	"strings"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/exchange"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/session"
	"github.com/warrenmq/warren/broker/vhost"
)

// exchangeName maps the URL name of the default exchange, amq.default, to "".
func exchangeName(s string) string {
	if s == "amq.default" {
		return ""
	}
	return s
}

func (s *Server) exchangeJSON(vh *vhost.VHost, x *exchange.Exchange) obj {
	o := obj{
		"name": x.Name, "vhost": vh.Name, "type": x.Type, "durable": x.Durable,
		"auto_delete": x.AutoDelete, "internal": x.Internal, "arguments": tableJSON(x.Args),
		"user_who_performed_action": "", "policy": nil,
	}
	if n, ok := vh.ExchangeDuplicates(x.Name); ok {
		o["duplicates_dropped"] = n // deduplicating exchanges only (Warren's extension)
	}
	// As RabbitMQ, message_stats appears once messages went through the exchange.
	if in, out := x.PublishIn.Load(), x.PublishOut.Load(); in > 0 || out > 0 {
		rt := s.rates.rates(x, xLen)
		o["message_stats"] = obj{
			"publish_in": in, "publish_in_details": details(rt[xPublishIn]),
			"publish_out": out, "publish_out_details": details(rt[xPublishOut]),
		}
	}
	return o
}

func (s *Server) exchanges(w http.ResponseWriter, r *http.Request) {
	vhs, ok := s.vhostsFor(w, r)
	if !ok {
		return
	}
	items := []obj{}
	for _, vh := range vhs {
		for _, x := range vh.Exchanges() {
			items = append(items, s.exchangeJSON(vh, x))
		}
	}
	writeList(w, r, items)
}

func (s *Server) exchangeParam(w http.ResponseWriter, r *http.Request) (*vhost.VHost, *exchange.Exchange) {
	return s.exchangeIn(w, r, s.vhostParam(w, r))
}

// writeExchange is exchangeParam for a write: the vhost is checked with writeVHost.
func (s *Server) writeExchange(w http.ResponseWriter, r *http.Request) (*vhost.VHost, *exchange.Exchange) {
	return s.exchangeIn(w, r, s.writeVHost(w, r))
}

// exchangeIn returns the {name} exchange of vh (404 when missing; nil vh: already answered).
func (s *Server) exchangeIn(w http.ResponseWriter, r *http.Request, vh *vhost.VHost) (*vhost.VHost, *exchange.Exchange) {
	if vh == nil {
		return nil, nil
	}
	x := vh.Exchange(exchangeName(pathValue(r, "name")))
	if x == nil {
		notFound(w)
		return nil, nil
	}
	return vh, x
}

func (s *Server) exchange(w http.ResponseWriter, r *http.Request) {
	vh, x := s.exchangeParam(w, r)
	if x == nil {
		return
	}
	o := s.exchangeJSON(vh, x)
	o["incoming"], o["outgoing"] = []obj{}, []obj{}
	writeObj(w, r, o)
}

func (s *Server) declareExchange(w http.ResponseWriter, r *http.Request) {
	vh := s.writeVHost(w, r)
	if vh == nil || !s.permit(w, r, refuseAccess, vh, session.PermConfigure, session.KindExchange, exchangeName(pathValue(r, "name")), "") {
		return
	}
	var body obj
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	typ, _ := stringField(body, "type")
	if typ == "" {
		typ = exchange.Direct
	}
	var flags [3]bool
	for i, k := range []string{"durable", "auto_delete", "internal"} {
		v, err := boolField(body, k, false)
		if err != nil {
			badRequest(w, "%s: %v", k, err)
			return
		}
		flags[i] = v
	}
	args, err := toTable(body["arguments"])
	if err != nil {
		badRequest(w, "arguments: %v", err)
		return
	}
	name := exchangeName(pathValue(r, "name"))
	existed := vh.Exchange(name) != nil
	if !exchange.ValidType(typ) {
		badRequest(w, "unknown exchange type '%s'", typ)
		return
	}
	if _, err := vh.DeclareExchange(vhost.ExchangeDecl{Name: name, Type: typ, Durable: flags[0], AutoDelete: flags[1], Internal: flags[2], Args: args}); err != nil {
		writeBrokerError(w, err)
		return
	}
	created(w, existed)
}

func (s *Server) deleteExchange(w http.ResponseWriter, r *http.Request) {
	vh, x := s.writeExchange(w, r)
	if x == nil || !s.permit(w, r, refuseAccess, vh, session.PermConfigure, session.KindExchange, x.Name, "") {
		return
	}
	if err := vh.DeleteExchange(x.Name, r.URL.Query().Get("if-unused") == "true"); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// publish is POST /api/exchanges/{vhost}/{name}/publish; it answers {"routed": bool}. As an
// AMQP publish, it needs write permission on the exchange (and topic write on the routing
// key), and a BCC header is routed and then stripped from the message.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	vh, x := s.writeExchange(w, r)
	if x == nil {
		return
	}
	var body obj
	if err := decodeBody(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	var missing []string
	for _, k := range []string{"routing_key", "properties", "payload", "payload_encoding"} {
		if _, ok := body[k]; !ok {
			missing = append(missing, "{key_missing,"+k+"}")
		}
	}
	if len(missing) > 0 {
		badRequest(w, "[%s]", strings.Join(missing, ",\n "))
		return
	}
	key, _ := stringField(body, "routing_key")
	payload, _ := stringField(body, "payload")
	enc, _ := stringField(body, "payload_encoding")
	var data []byte
	switch enc {
	case "string":
		data = []byte(payload)
	case "base64":
		var err error
		if data, err = base64.StdEncoding.DecodeString(payload); err != nil {
			badRequest(w, "payload: not base64")
			return
		}
	default:
		badRequest(w, "payload_encoding: %q is not one of string, base64", enc)
		return
	}
	if !s.permit(w, r, refusePublish, vh, session.PermWrite, session.KindExchange, x.Name, key) {
		return
	}
	props, err := propertiesFromJSON(body["properties"])
	if err != nil {
		badRequest(w, "properties: %v", err)
		return
	}
	msg, err := message.New(x.Name, key, props.AppendTo(nil), data)
	if err != nil {
		badRequest(w, "properties: %v", err)
		return
	}
	var rt vhost.Router
	out, err := vh.Publish(&rt, msg, nil)
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	// Routed here means some queue took it (a queue that refused it by overflow does not
	// count), or the exchange's deduplication dropped it: accepted before.
	routed := out.Duplicate || out.Queued
	st := s.b.Stats()
	st.Add(session.StatPublish, 1)
	if !routed {
		st.Add(session.StatDropUnroutable, 1)
	}
	writeJSON(w, http.StatusOK, obj{"routed": routed})
}

// propertiesFromJSON builds basic properties from the API's JSON form.
func propertiesFromJSON(v any) (amqp.Properties, error) {
	var p amqp.Properties
	m, _ := v.(obj)
	if m == nil {
		return p, nil // {} or RabbitMQ's [] for none
	}
	strs := map[string]*string{
		"content_type": &p.ContentType, "content_encoding": &p.ContentEncoding,
		"correlation_id": &p.CorrelationID, "reply_to": &p.ReplyTo, "expiration": &p.Expiration,
		"message_id": &p.MessageID, "type": &p.Type, "user_id": &p.UserID, "app_id": &p.AppID,
		"cluster_id": &p.ClusterID,
	}
	for k, dst := range strs {
		if s, ok := m[k].(string); ok {
			*dst = s
		}
	}
	if n, err := intField(m, "delivery_mode", 0); err != nil || n < 0 || n > 255 {
		return p, errBadProperty("delivery_mode")
	} else {
		p.DeliveryMode = uint8(n)
	}
	if n, err := intField(m, "priority", 0); err != nil || n < 0 || n > 255 {
		return p, errBadProperty("priority")
	} else {
		p.Priority = uint8(n)
	}
	if n, err := intField(m, "timestamp", 0); err != nil {
		return p, errBadProperty("timestamp")
	} else if n != 0 {
		p.Timestamp = unixTime(int64(n))
	}
	if h, ok := m["headers"]; ok {
		t, err := toTable(h)
		if err != nil {
			return p, errBadProperty("headers")
		}
		if t == nil {
			t = amqp.Table{}
		}
		p.Headers = t
	}
	return p, nil
}

type errBadProperty string

func (e errBadProperty) Error() string { return "invalid property " + string(e) }

// ---- bindings

// propertiesKey is RabbitMQ's properties_key naming one binding in URLs: the quoted routing
// key, plus "~" and a hash of the arguments when there are any ("~" alone for an empty key
// without arguments). RabbitMQ hashes with erlang:phash2; we hash the encoded table with
// FNV-32a, so keys differ from RabbitMQ's but round-trip through this API the same way.
func propertiesKey(key string, args amqp.Table) string {
	if len(args) == 0 {
		if key == "" {
			return "~"
		}
		return quoteBinding(key)
	}
	h := fnv.New32a()
	h.Write(amqp.AppendTable(nil, args))
	return quoteBinding(key) + "~" + quoteBinding(base64.RawURLEncoding.EncodeToString(h.Sum(nil)))
}

// quoteBinding is RabbitMQ's quote_plus with "~" escaped as %7E.
func quoteBinding(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "~", "%7E")
}

func bindingJSON(vh *vhost.VHost, b vhost.BindingInfo) obj {
	dt := "queue"
	if b.DestIsExchange {
		dt = "exchange"
	}
	return obj{
		"source": b.Source, "vhost": vh.Name, "destination": b.Destination, "destination_type": dt,
		"routing_key": b.Key, "arguments": tableJSON(b.Args), "properties_key": propertiesKey(b.Key, b.Args),
	}
}

// listBindings returns the bindings of the request's vhosts that keep says to keep.
func (s *Server) listBindings(w http.ResponseWriter, r *http.Request, keep func(b vhost.BindingInfo) bool) ([]obj, bool) {
	vhs, ok := s.vhostsFor(w, r)
	if !ok {
		return nil, false
	}
	items := []obj{}
	for _, vh := range vhs {
		for _, b := range vh.Bindings() {
			if keep == nil || keep(b) {
				items = append(items, bindingJSON(vh, b))
			}
		}
	}
	return items, true
}

func writeBindings(w http.ResponseWriter, r *http.Request, items []obj) {
	if r.URL.Query().Get("sort") == "" {
		q := r.URL.Query()
		q.Set("sort", "source")
		r.URL.RawQuery = q.Encode()
	}
	writeList(w, r, items)
}

func (s *Server) bindings(w http.ResponseWriter, r *http.Request) {
	if items, ok := s.listBindings(w, r, nil); ok {
		writeBindings(w, r, items)
	}
}

func (s *Server) queueBindings(w http.ResponseWriter, r *http.Request) {
	if _, q := s.queueParam(w, r); q == nil {
		return
	}
	name := pathValue(r, "name")
	if items, ok := s.listBindings(w, r, func(b vhost.BindingInfo) bool { return !b.DestIsExchange && b.Destination == name }); ok {
		writeBindings(w, r, items)
	}
}

func (s *Server) exchangeBindings(source bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, x := s.exchangeParam(w, r)
		if x == nil {
			return
		}
		items, ok := s.listBindings(w, r, func(b vhost.BindingInfo) bool {
			if source {
				return b.Source == x.Name
			}
			return b.DestIsExchange && b.Destination == x.Name
		})
		if ok {
			writeBindings(w, r, items)
		}
	}
}

// bindingEnds checks the vhost, source and destination of a binding URL (404 if missing); for
// a write, the vhost as writeVHost does.
func (s *Server) bindingEnds(w http.ResponseWriter, r *http.Request, kind string, write bool) (vh *vhost.VHost, src, dst string, ok bool) {
	if write {
		vh = s.writeVHost(w, r)
	} else {
		vh = s.vhostParam(w, r)
	}
	if vh == nil {
		return nil, "", "", false
	}
	src, dst = exchangeName(pathValue(r, "source")), pathValue(r, "dest")
	if vh.Exchange(src) == nil {
		notFound(w)
		return nil, "", "", false
	}
	if kind == "e" {
		dst = exchangeName(dst)
		if vh.Exchange(dst) == nil {
			notFound(w)
			return nil, "", "", false
		}
	} else if vh.Queue(dst) == nil {
		notFound(w)
		return nil, "", "", false
	}
	return vh, src, dst, true
}

func matchBinding(kind, src, dst string) func(b vhost.BindingInfo) bool {
	return func(b vhost.BindingInfo) bool {
		return b.Source == src && b.Destination == dst && b.DestIsExchange == (kind == "e")
	}
}

func (s *Server) bindingsBetween(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, src, dst, ok := s.bindingEnds(w, r, kind, false)
		if !ok {
			return
		}
		if items, ok := s.listBindings(w, r, matchBinding(kind, src, dst)); ok {
			writeBindings(w, r, items)
		}
	}
}

func (s *Server) findBinding(w http.ResponseWriter, r *http.Request, kind string, write bool) (*vhost.VHost, vhost.BindingInfo, bool) {
	vh, src, dst, ok := s.bindingEnds(w, r, kind, write)
	if !ok {
		return nil, vhost.BindingInfo{}, false
	}
	props := pathValue(r, "props")
	match := matchBinding(kind, src, dst)
	for _, b := range vh.Bindings() {
		if match(b) && propertiesKey(b.Key, b.Args) == props {
			return vh, b, true
		}
	}
	notFound(w)
	return nil, vhost.BindingInfo{}, false
}

func (s *Server) binding(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if vh, b, ok := s.findBinding(w, r, kind, false); ok {
			writeObj(w, r, bindingJSON(vh, b))
		}
	}
}

func (s *Server) createBinding(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		vh, src, dst, ok := s.bindingEnds(w, r, kind, true)
		if !ok {
			return
		}
		var body obj
		if err := decodeBody(r, &body); err != nil {
			badRequest(w, "%v", err)
			return
		}
		key, _ := stringField(body, "routing_key")
		args, err := toTable(body["arguments"])
		if err != nil {
			badRequest(w, "arguments: %v", err)
			return
		}
		if !s.permitBinding(w, r, vh, kind, src, dst, key) {
			return
		}
		if kind == "e" {
			err = vh.BindExchange(dst, src, key, args)
		} else {
			q := vh.Queue(dst)
			err = vh.BindQueue(dst, src, key, args, q.Owner)
		}
		if err != nil {
			writeBrokerError(w, err)
			return
		}
		w.Header().Set("Location", url.PathEscape(dst)+"/"+propertiesKey(key, args))
		w.WriteHeader(http.StatusCreated)
	}
}

func (s *Server) deleteBinding(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		vh, b, ok := s.findBinding(w, r, kind, true)
		if !ok || !s.permitBinding(w, r, vh, kind, b.Source, b.Destination, b.Key) {
			return
		}
		var err error
		if kind == "e" {
			err = vh.UnbindExchange(b.Destination, b.Source, b.Key, b.Args)
		} else {
			err = vh.UnbindQueue(b.Destination, b.Source, b.Key, b.Args)
		}
		if err != nil {
			writeBrokerError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// permitBinding checks a binding's permissions as queue.bind and exchange.bind do: write on
// the destination, then read on the source (with the topic read check of the routing key).
func (s *Server) permitBinding(w http.ResponseWriter, r *http.Request, vh *vhost.VHost, kind, src, dst, key string) bool {
	dk := session.KindQueue
	if kind == "e" {
		dk = session.KindExchange
	}
	return s.permit(w, r, refuseAccess, vh, session.PermWrite, dk, dst, "") &&
		s.permit(w, r, refuseAccess, vh, session.PermRead, session.KindExchange, src, key)
}
