package broker

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/vhost"
)

// The node's metadata state machine: every change of vhosts, users, limits, permissions,
// parameters, policies, exchanges, queues and bindings is a meta.Record that the metadata
// store (Server.meta) makes durable and then hands to Apply, live and at start alike.

// Apply implements meta.Applier: it applies one record to the node's state. Vhost-scoped
// entities (policies, exchanges, queues, bindings) are the vhost's (vhost.VHost.Apply).
func (s *Server) Apply(rec meta.Record, fx meta.Effects) (any, error) {
	switch rec.Kind {
	case meta.KindInit:
		fx.Keep()
		return nil, nil
	case meta.KindNodeBoot:
		for _, v := range s.VHosts() {
			v.DropNode(rec.Name, fx)
		}
		return nil, nil
	case meta.KindVHost:
		if rec.Delete {
			return nil, s.applyDeleteVHost(rec, fx)
		}
		return s.applyVHost(rec, fx), nil
	case meta.KindUser:
		if rec.Delete {
			return nil, s.applyDeleteUser(rec, fx)
		}
		return nil, s.applyUser(rec, fx)
	case meta.KindUserLimits:
		return nil, s.applyUserLimits(rec, fx)
	case meta.KindPermission:
		return nil, s.applyPermission(rec, fx)
	case meta.KindTopicPermission:
		return nil, s.applyTopicPermission(rec, fx)
	case meta.KindParameter:
		return nil, s.applyParameter(rec, fx)
	case meta.KindPolicy, meta.KindExchange, meta.KindQueue, meta.KindBinding, meta.KindPlacement:
		v := s.VHost(rec.VHost)
		if v == nil {
			if fx.Replaying() {
				return nil, nil // its vhost is gone: the record goes too
			}
			return nil, amqp.ChannelErr(amqp.NotFound, "no vhost '%s'", rec.VHost)
		}
		if rec.Kind == meta.KindPolicy && !rec.Delete && !fx.Replaying() {
			s.warnIgnoredPolicyKeys(rec)
		}
		return v.Apply(rec, fx)
	}
	return nil, fmt.Errorf("%w: %q", meta.ErrUnknownKind, rec.Kind)
}

// warnIgnoredPolicyKeys logs the keys of a policy that have no effect here (ha-*).
func (s *Server) warnIgnoredPolicyKeys(rec meta.Record) {
	var keys []string
	for k := range rec.Table("d") {
		if vhost.IgnoredPolicyKey(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		slices.Sort(keys)
		s.log.Warn().Str("vhost", rec.VHost).Str("policy", rec.Name).Strs("keys", keys).
			Msg("policy keys without effect in warren ignored (classic mirrored queues)")
	}
}

// missing answers a record that refers to a user or vhost that does not exist: an error
// live, a record dropped at start (what it referred to was deleted).
func missing(fx meta.Effects, err error) error {
	if fx.Replaying() {
		return nil
	}
	return err
}

func (s *Server) applyVHost(rec meta.Record, fx meta.Effects) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vhosts[rec.Name] != nil {
		return false
	}
	v := s.newVHost(rec.Name)
	if fx.Replaying() || s.recovering.Load() {
		// Until recover's FinishRestore (a replicated store replays live records: it is the
		// node's start that says so).
		v.BeginRestore()
	}
	if lim, ok := s.sec.vhostLimits[rec.Name]; ok {
		v.SetMaxQueues(lim.MaxQueues)
	}
	s.vhosts[rec.Name] = v
	fx.Keep()
	return true
}

// applyDeleteVHost removes a vhost and everything in it (see DeleteVHost).
func (s *Server) applyDeleteVHost(rec meta.Record, fx meta.Effects) error {
	name := rec.Name
	s.mu.Lock()
	v := s.vhosts[name]
	if v == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: '%s'", ErrNoVHost, name)
	}
	delete(s.vhosts, name)
	delete(s.sec.vhostLimits, name)
	conns := s.trackedLocked(name, "")
	s.mu.Unlock()
	fx.Drop(meta.VHostKey(name))
	fx.Drop(meta.ParameterKey(name, componentVHostLimits, "limits"))
	ps, ts := s.acl.list()
	for _, p := range ps {
		if p.VHost == name {
			fx.Drop(meta.PermissionKey(name, p.User))
		}
	}
	for _, p := range ts {
		if p.VHost == name {
			fx.Drop(meta.TopicPermissionKey(name, p.User, p.Exchange))
		}
	}
	s.acl.drop(name, "")
	for _, c := range conns {
		c.Shutdown("vhost '" + name + "' is deleted")
	}
	v.Drop(fx)
	return nil
}

// userFromRecord reads a user record.
func userFromRecord(rec meta.Record) User {
	u := User{Name: rec.Name, HashingAlgorithm: rec.Str("ha")}
	u.PasswordHash, _ = rec.Fields["h"].([]byte)
	if tags, ok := rec.Fields["t"].([]any); ok {
		for _, t := range tags {
			if s, ok := t.(string); ok {
				u.Tags = append(u.Tags, s)
			}
		}
	}
	return u
}

func userRecord(u User) meta.Record {
	tags := make([]any, len(u.Tags))
	for i, t := range u.Tags {
		tags[i] = t
	}
	alg := u.HashingAlgorithm
	if alg == "" {
		alg = HashSHA256
	}
	return meta.Record{Kind: meta.KindUser, Name: u.Name,
		Fields: amqp.Table{"h": slices.Clone(u.PasswordHash), "ha": alg, "t": tags}}
}

// sameUser reports whether a stored user has a's password hash, algorithm and tags.
func sameUser(a, b User) bool {
	algA, algB := a.HashingAlgorithm, b.HashingAlgorithm
	if algA == "" {
		algA = HashSHA256
	}
	if algB == "" {
		algB = HashSHA256
	}
	return algA == algB && bytes.Equal(a.PasswordHash, b.PasswordHash) && slices.Equal(a.Tags, b.Tags)
}

func (s *Server) applyUser(rec meta.Record, fx meta.Effects) error {
	u := userFromRecord(rec)
	u.Limits = NoUserLimits
	if old, ok := s.users.Lookup(u.Name); ok {
		if sameUser(old, u) {
			return nil
		}
		u.Limits = old.Limits // limits are records of their own
	}
	if err := s.users.Put(u); err != nil {
		return err
	}
	fx.Keep()
	return nil
}

// applyDeleteUser removes a user with its limits, permissions and topic permissions, and
// closes its connections.
func (s *Server) applyDeleteUser(rec meta.Record, fx meta.Effects) error {
	name := rec.Name
	if !s.users.Delete(name) {
		return fmt.Errorf("%w: '%s'", ErrNoUser, name)
	}
	fx.Drop(meta.UserKey(name))
	fx.Drop(meta.UserLimitsKey(name))
	ps, ts := s.acl.list()
	for _, p := range ps {
		if p.User == name {
			fx.Drop(meta.PermissionKey(p.VHost, name))
		}
	}
	for _, p := range ts {
		if p.User == name {
			fx.Drop(meta.TopicPermissionKey(p.VHost, name, p.Exchange))
		}
	}
	s.acl.drop("", name)
	s.mu.Lock()
	conns := s.trackedLocked("", name)
	s.mu.Unlock()
	for _, c := range conns {
		c.Shutdown("user '" + name + "' is deleted")
	}
	return nil
}

func userLimitsRecord(name string, l UserLimits) meta.Record {
	return meta.Record{Kind: meta.KindUserLimits, Name: name,
		Fields: amqp.Table{"mc": int64(l.MaxConnections), "mch": int64(l.MaxChannels)}}
}

func (s *Server) applyUserLimits(rec meta.Record, fx meta.Effects) error {
	l := NoUserLimits
	if !rec.Delete {
		l = UserLimits{MaxConnections: int(rec.Int("mc", -1)), MaxChannels: int(rec.Int("mch", -1))}
	}
	changed := false
	err := s.users.update(rec.Name, func(u *User) {
		changed = u.Limits != l
		u.Limits = l
	})
	if err != nil {
		return missing(fx, err)
	}
	switch {
	case rec.Delete:
		fx.Drop(meta.UserLimitsKey(rec.Name))
	case changed || fx.Replaying():
		fx.Keep()
	}
	return nil
}

func permissionRecord(p Permission) meta.Record {
	return meta.Record{Kind: meta.KindPermission, VHost: p.VHost, Name: p.User,
		Fields: amqp.Table{"c": p.Configure, "w": p.Write, "r": p.Read}}
}

func (s *Server) applyPermission(rec meta.Record, fx meta.Effects) error {
	vh, user := rec.VHost, rec.Name
	if rec.Delete {
		s.acl.mu.Lock()
		delete(s.acl.perms, aclKey{vh, user})
		s.acl.mu.Unlock()
		fx.Drop(meta.PermissionKey(vh, user))
		return nil
	}
	if err := s.checkUserVHost(user, vh); err != nil {
		return missing(fx, err)
	}
	p := Permission{User: user, VHost: vh, Configure: rec.Str("c"), Write: rec.Str("w"), Read: rec.Str("r")}
	if g := s.acl.lookup(vh, user); g != nil && g.p == p {
		return nil
	}
	g, err := newGrant(p)
	if err != nil {
		return err
	}
	s.acl.set(g)
	fx.Keep()
	return nil
}

func topicPermissionRecord(p TopicPermission) meta.Record {
	return meta.Record{Kind: meta.KindTopicPermission, VHost: p.VHost, Name: p.User,
		Fields: amqp.Table{"x": p.Exchange, "w": p.Write, "r": p.Read}}
}

// applyTopicPermission sets or clears a topic permission; a delete without an exchange
// clears every topic permission of the user in the vhost.
func (s *Server) applyTopicPermission(rec meta.Record, fx meta.Effects) error {
	vh, user, x := rec.VHost, rec.Name, rec.Str("x")
	if rec.Delete {
		s.acl.mu.Lock()
		k := aclKey{vh, user}
		var gone []string
		for name := range s.acl.topics[k] {
			if x == "" || name == x {
				gone = append(gone, name)
			}
		}
		for _, name := range gone {
			delete(s.acl.topics[k], name)
		}
		if len(s.acl.topics[k]) == 0 {
			delete(s.acl.topics, k)
		}
		s.acl.mu.Unlock()
		for _, name := range gone {
			fx.Drop(meta.TopicPermissionKey(vh, user, name))
		}
		return nil
	}
	if err := s.checkUserVHost(user, vh); err != nil {
		return missing(fx, err)
	}
	p := TopicPermission{User: user, VHost: vh, Exchange: x, Write: rec.Str("w"), Read: rec.Str("r")}
	if g := s.acl.topic(vh, user, x); g != nil && g.p == p {
		return nil
	}
	g, err := newTopicGrant(p)
	if err != nil {
		return err
	}
	s.acl.setTopic(g)
	fx.Keep()
	return nil
}

// componentVHostLimits is the runtime parameter component of vhost limits (RabbitMQ's).
const componentVHostLimits = "vhost-limits"

func vhostLimitsRecord(vh string, l VHostLimits) meta.Record {
	val := amqp.Table{}
	if l.MaxConnections >= 0 {
		val["max-connections"] = int64(l.MaxConnections)
	}
	if l.MaxQueues >= 0 {
		val["max-queues"] = int64(l.MaxQueues)
	}
	return meta.Record{Kind: meta.KindParameter, VHost: vh, Name: "limits",
		Fields: amqp.Table{"c": componentVHostLimits, "val": val}}
}

// applyParameter sets or clears a runtime parameter. Only vhost limits have an effect here;
// other components are refused (as RabbitMQ refuses a component whose plugin is off).
func (s *Server) applyParameter(rec meta.Record, fx meta.Effects) error {
	if c := rec.Str("c"); c != componentVHostLimits {
		return fmt.Errorf("%w: %q", ErrUnknownComponent, c)
	}
	l := NoVHostLimits
	if !rec.Delete {
		val := rec.Table("val")
		if n, ok := amqp.IntValue(val["max-connections"]); ok {
			l.MaxConnections = int(n)
		}
		if n, ok := amqp.IntValue(val["max-queues"]); ok {
			l.MaxQueues = int(n)
		}
	}
	s.mu.Lock()
	v := s.vhosts[rec.VHost]
	if v == nil {
		s.mu.Unlock()
		return missing(fx, fmt.Errorf("%w: '%s'", ErrNoVHost, rec.VHost))
	}
	old, had := s.sec.vhostLimits[rec.VHost]
	if rec.Delete {
		delete(s.sec.vhostLimits, rec.VHost)
	} else {
		s.sec.vhostLimits[rec.VHost] = l
	}
	s.mu.Unlock()
	v.SetMaxQueues(l.MaxQueues)
	switch {
	case rec.Delete:
		fx.Drop(meta.ParameterKey(rec.VHost, componentVHostLimits, rec.Name))
	case !had || old != l || fx.Replaying():
		fx.Keep()
	}
	return nil
}
