package broker

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/exchange"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/session"
	"github.com/warrenmq/warren/broker/vhost"
)

// Access control, RabbitMQ style (https://www.rabbitmq.com/access-control.html):
//
//   - a user may open a connection to a vhost only when it has a permission entry there (even
//     one whose three expressions are empty);
//   - configure, write and read are regular expressions matched (unanchored, as Erlang's
//     re:run) against queue and exchange names; "" matches nothing, ".*" everything; the default
//     exchange "" is named "amq.default";
//   - topic permissions restrict, per exchange, the routing keys of publishes (write) and of
//     bindings (read) on topic exchanges; with no entry for an exchange everything is allowed;
//     "" matches only the empty key, and {username} and {vhost} are expanded.
//
// Expressions are compiled as vhost.CompilePattern does: Go's RE2 for what it accepts, and a
// PCRE-compatible engine only for what RE2 refuses (look-around, back-references), which
// RabbitMQ (Erlang's re) accepts in permissions too.

// Permission is one user's configure/write/read expressions in one vhost.
type Permission struct {
	User, VHost            string
	Configure, Write, Read string
}

// TopicPermission is one user's topic permission on one exchange of one vhost.
type TopicPermission struct {
	User, VHost, Exchange string
	Write, Read           string
}

// VHostLimits are RabbitMQ's vhost limits; a negative value means no limit, 0 means none
// allowed.
type VHostLimits struct {
	MaxConnections int // client connections to the vhost across the node
	MaxQueues      int // queues in the vhost
}

// NoVHostLimits is VHostLimits without any limit.
var NoVHostLimits = VHostLimits{MaxConnections: -1, MaxQueues: -1}

// matcher is a compiled permission expression with fast paths for "" and ".*".
type matcher struct {
	all, none bool
	re        *vhost.Pattern
}

func (m *matcher) match(s string) bool {
	switch {
	case m.all:
		return true
	case m.none:
		return false
	}
	return m.re.MatchString(s)
}

// compilePerm compiles a configure/write/read expression: "" matches nothing.
func compilePerm(expr string) (matcher, error) {
	switch expr {
	case "":
		return matcher{none: true}, nil
	case ".*":
		return matcher{all: true}, nil
	}
	re, err := vhost.CompilePattern(expr)
	if err != nil {
		return matcher{}, fmt.Errorf("%w: %q: %v", ErrBadRegexp, expr, err)
	}
	return matcher{re: re}, nil
}

// compileTopic compiles a topic permission expression: "" is "^$" (only the empty routing
// key), and {username} / {vhost} are replaced by the user and vhost names, as RabbitMQ does.
func compileTopic(expr, user, vh string) (matcher, error) {
	if expr == "" {
		expr = "^$"
	}
	expr = strings.NewReplacer("{username}", user, "{vhost}", vh).Replace(expr)
	if expr == ".*" {
		return matcher{all: true}, nil
	}
	re, err := vhost.CompilePattern(expr)
	if err != nil {
		return matcher{}, fmt.Errorf("%w: %q: %v", ErrBadRegexp, expr, err)
	}
	return matcher{re: re}, nil
}

type aclKey struct{ vhost, user string }

type grant struct {
	p                      Permission
	configure, write, read matcher
}

func (g *grant) allows(perm session.Perm, name string) bool {
	switch perm {
	case session.PermConfigure:
		return g.configure.match(name)
	case session.PermWrite:
		return g.write.match(name)
	}
	return g.read.match(name)
}

type topicGrant struct {
	p           TopicPermission
	write, read matcher
}

// acl holds permissions and topic permissions. It has its own lock, taken last (after
// Server.mu) and never held while calling out.
type acl struct {
	mu     sync.RWMutex
	perms  map[aclKey]*grant
	topics map[aclKey]map[string]*topicGrant // by exchange name
}

func newACL() *acl {
	return &acl{perms: make(map[aclKey]*grant), topics: make(map[aclKey]map[string]*topicGrant)}
}

func newGrant(p Permission) (*grant, error) {
	g := &grant{p: p}
	var err error
	if g.configure, err = compilePerm(p.Configure); err != nil {
		return nil, err
	}
	if g.write, err = compilePerm(p.Write); err != nil {
		return nil, err
	}
	if g.read, err = compilePerm(p.Read); err != nil {
		return nil, err
	}
	return g, nil
}

func newTopicGrant(p TopicPermission) (*topicGrant, error) {
	g := &topicGrant{p: p}
	var err error
	if g.write, err = compileTopic(p.Write, p.User, p.VHost); err != nil {
		return nil, err
	}
	if g.read, err = compileTopic(p.Read, p.User, p.VHost); err != nil {
		return nil, err
	}
	return g, nil
}

func (a *acl) set(g *grant) {
	a.mu.Lock()
	a.perms[aclKey{g.p.VHost, g.p.User}] = g
	a.mu.Unlock()
}

func (a *acl) setTopic(g *topicGrant) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := aclKey{g.p.VHost, g.p.User}
	if a.topics[k] == nil {
		a.topics[k] = make(map[string]*topicGrant)
	}
	a.topics[k][g.p.Exchange] = g
}

func (a *acl) lookup(vh, user string) *grant {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.perms[aclKey{vh, user}]
}

func (a *acl) topic(vh, user, x string) *topicGrant {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.topics[aclKey{vh, user}][x]
}

// drop removes every entry matching vh and user ("" matches any).
func (a *acl) drop(vh, user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	match := func(k aclKey) bool { return (vh == "" || k.vhost == vh) && (user == "" || k.user == user) }
	for k := range a.perms {
		if match(k) {
			delete(a.perms, k)
		}
	}
	for k := range a.topics {
		if match(k) {
			delete(a.topics, k)
		}
	}
}

func (a *acl) list() ([]Permission, []TopicPermission) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	ps := make([]Permission, 0, len(a.perms))
	for _, g := range a.perms {
		ps = append(ps, g.p)
	}
	var ts []TopicPermission
	for _, m := range a.topics {
		for _, g := range m {
			ts = append(ts, g.p)
		}
	}
	slices.SortFunc(ps, func(a, b Permission) int {
		return cmp.Or(cmp.Compare(a.VHost, b.VHost), cmp.Compare(a.User, b.User))
	})
	slices.SortFunc(ts, func(a, b TopicPermission) int {
		return cmp.Or(cmp.Compare(a.VHost, b.VHost), cmp.Compare(a.User, b.User), cmp.Compare(a.Exchange, b.Exchange))
	})
	return ps, ts
}

// security is the server's multi-tenancy state besides users and permissions: vhost limits and
// the connections counted against them. Guarded by Server.mu.
type security struct {
	vhostLimits map[string]VHostLimits
	tracked     map[*session.Conn]aclKey // connections that passed OpenVHost: their vhost and user
	perVHost    map[string]int
	perUser     map[string]int
}

func newSecurity() security {
	return security{
		vhostLimits: make(map[string]VHostLimits),
		tracked:     make(map[*session.Conn]aclKey),
		perVHost:    make(map[string]int),
		perUser:     make(map[string]int),
	}
}

// authorize implements session.Env.Authorize: RabbitMQ's check_resource_access (403
// ACCESS_REFUSED, channel scope) and, for topic exchanges, its topic permission check.
//
// routingKey is checked for write (publish) and read (queue.bind, exchange.bind, unbind)
// on exchanges. The write check of an exchange.bind destination arrives the same way with an
// empty key; a topic write permission that refuses "" on that destination would refuse the
// bind, where RabbitMQ checks no topic permission (rare: noted, not worth a wider hook).
func (s *Server) authorize(user, vh string, perm session.Perm, kind session.ResourceKind, name, routingKey string) error {
	res := name
	if kind == session.KindExchange && name == "" {
		res = "amq.default"
	}
	g := s.acl.lookup(vh, user)
	if g == nil || !g.allows(perm, res) {
		return amqp.ChannelErr(amqp.AccessRefused, "access to %s '%s' in vhost '%s' refused for user '%s'", kind, res, vh, user)
	}
	if kind != session.KindExchange || perm == session.PermConfigure || name == "" {
		return nil
	}
	tg := s.acl.topic(vh, user, name)
	if tg == nil {
		return nil
	}
	v := s.VHost(vh)
	if v == nil {
		return nil
	}
	if x := v.Exchange(name); x == nil || x.Type != exchange.Topic {
		return nil
	}
	m := &tg.read
	if perm == session.PermWrite {
		m = &tg.write
	}
	if !m.match(routingKey) {
		return amqp.ChannelErr(amqp.AccessRefused, "access to topic '%s' in exchange '%s' in vhost '%s' refused for user '%s'", routingKey, name, vh, user)
	}
	return nil
}

// openErr is a connection.open refusal (530 NOT_ALLOWED).
func openErr(format string, args ...any) error {
	e := amqp.ConnErr(amqp.NotAllowed, format, args...).(*amqp.Error)
	e.ClassID, e.MethodID = 10, 40
	return e
}

// openVHost implements session.Env.OpenVHost with RabbitMQ's checks, in its order: the vhost
// exists, the vhost's and then the user's connection limit, then the user's access to the
// vhost. A connection that passes is counted until Unregistered.
func (s *Server) openVHost(c *session.Conn, name string) (*vhost.VHost, error) {
	user := c.User()
	ul := NoUserLimits
	if u, ok := s.users.Lookup(user); ok {
		ul = u.Limits
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, session.ShutdownError()
	}
	v := s.vhosts[name]
	if v == nil {
		return nil, openErr("vhost %s not found", name)
	}
	lim, ok := s.sec.vhostLimits[name]
	if !ok {
		lim = NoVHostLimits
	}
	if lim.MaxConnections >= 0 && s.sec.perVHost[name] >= lim.MaxConnections {
		return nil, openErr("access to vhost '%s' refused for user '%s': connection limit (%d) is reached", name, user, lim.MaxConnections)
	}
	if ul.MaxConnections >= 0 && s.sec.perUser[user] >= ul.MaxConnections {
		return nil, openErr("connection refused for user '%s': user connection limit (%d) is reached", user, ul.MaxConnections)
	}
	if s.acl.lookup(name, user) == nil {
		return nil, openErr("access to vhost '%s' refused for user '%s'", name, user)
	}
	s.sec.tracked[c] = aclKey{name, user}
	s.sec.perVHost[name]++
	s.sec.perUser[user]++
	return v, nil
}

// untrack forgets a connection counted by openVHost.
func (s *Server) untrack(c *session.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.sec.tracked[c]
	if !ok {
		return
	}
	delete(s.sec.tracked, c)
	if s.sec.perVHost[k.vhost]--; s.sec.perVHost[k.vhost] <= 0 {
		delete(s.sec.perVHost, k.vhost)
	}
	if s.sec.perUser[k.user]--; s.sec.perUser[k.user] <= 0 {
		delete(s.sec.perUser, k.user)
	}
}

// trackedLocked returns the tracked connections of vh and user ("" matches any); s.mu held.
func (s *Server) trackedLocked(vh, user string) []*session.Conn {
	var out []*session.Conn
	for c, k := range s.sec.tracked {
		if (vh == "" || k.vhost == vh) && (user == "" || k.user == user) {
			out = append(out, c)
		}
	}
	return out
}

// ---- management API: users, vhosts, limits and permissions. Each change is a record of
// the metadata store (see apply.go); what can be answered without a change is answered here.

// propose hands a record to the metadata store.
func (s *Server) propose(rec meta.Record) (any, error) { return s.meta.Propose(rec) }

// AddUser creates a user with a password hashed as RabbitMQ does (SHA-256, 4-byte salt), or,
// when it exists, replaces its password and tags (keeping its limits), like RabbitMQ's PUT
// /api/users/{name}. Tags: administrator, monitoring, management, policymaker, impersonator.
// The new user has no permissions.
func (s *Server) AddUser(name, password string, tags []string) error {
	return s.PutUser(User{Name: name, PasswordHash: HashPassword(password), HashingAlgorithm: HashSHA256, Tags: tags})
}

// PutUser creates or replaces a user from a stored hash, as a definitions import does:
// u.PasswordHash is RabbitMQ's password_hash decoded from base64 (salt + digest; empty for
// a user without password), u.HashingAlgorithm RabbitMQ's module name ("" means SHA-256).
// Limits of an existing user are kept when u.Limits is the zero value. Errors: ErrBadHash,
// ErrBadAlgorithm.
func (s *Server) PutUser(u User) error {
	if u.Name == "" {
		return fmt.Errorf("%w: empty name", ErrNoUser)
	}
	if err := checkHash(u); err != nil {
		return err
	}
	if old, ok := s.users.Lookup(u.Name); !ok || !sameUser(old, u) {
		if _, err := s.propose(userRecord(u)); err != nil {
			return err
		}
	}
	if u.Limits == (UserLimits{}) {
		return nil
	}
	return s.SetUserLimits(u.Name, u.Limits)
}

// checkHash checks a stored hash's length for its algorithm (empty: no password).
func checkHash(u User) error {
	if len(u.PasswordHash) == 0 {
		return nil
	}
	newH, err := newHash(u.HashingAlgorithm)
	if err != nil {
		return err
	}
	if len(u.PasswordHash) != 4+newH().Size() {
		return fmt.Errorf("%w: %d bytes for %s", ErrBadHash, len(u.PasswordHash), u.HashingAlgorithm)
	}
	return nil
}

// DeleteUser deletes a user with its permissions and topic permissions in every vhost, and
// closes its connections with 320 CONNECTION_FORCED "user 'name' is deleted", as RabbitMQ.
// Error: ErrNoUser.
func (s *Server) DeleteUser(name string) error {
	if _, ok := s.users.Lookup(name); !ok {
		return fmt.Errorf("%w: '%s'", ErrNoUser, name)
	}
	_, err := s.propose(meta.Record{Kind: meta.KindUser, Delete: true, Name: name})
	return err
}

// Users returns copies of every user, sorted by name.
func (s *Server) Users() []User { return s.users.List() }

// User returns a copy of the named user.
func (s *Server) User(name string) (User, bool) { return s.users.Lookup(name) }

// SetUserLimits sets a user's max-connections and max-channels (negative: no limit). New
// connections over the limit are refused at connection.open with 530 NOT_ALLOWED; existing
// ones stay. Error: ErrNoUser.
func (s *Server) SetUserLimits(name string, l UserLimits) error {
	u, ok := s.users.Lookup(name)
	if !ok {
		return fmt.Errorf("%w: '%s'", ErrNoUser, name)
	}
	if u.Limits == l {
		return nil
	}
	_, err := s.propose(userLimitsRecord(name, l))
	return err
}

// ---- management API: vhosts

// AddVHost creates an empty vhost with the predeclared exchanges; adding an existing vhost
// succeeds and changes nothing (RabbitMQ's PUT /api/vhosts/{name}). Nobody has permissions on
// it yet: RabbitMQ's HTTP API also grants the creating user full permissions, which is the
// caller's job (SetPermissions).
func (s *Server) AddVHost(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrNoVHost)
	}
	if s.VHost(name) != nil {
		return nil
	}
	_, err := s.propose(meta.Record{Kind: meta.KindVHost, Name: name})
	return err
}

// DeleteVHost deletes a vhost and everything in it, as RabbitMQ: its connections are closed
// with 320 CONNECTION_FORCED "vhost 'name' is deleted", its queues (with their messages),
// exchanges and bindings, policies, permissions, topic permissions and limits are removed.
// Error: ErrNoVHost.
func (s *Server) DeleteVHost(name string) error {
	if s.VHost(name) == nil {
		return fmt.Errorf("%w: '%s'", ErrNoVHost, name)
	}
	_, err := s.propose(meta.Record{Kind: meta.KindVHost, Delete: true, Name: name})
	return err
}

// SetVHostLimits sets a vhost's max-connections and max-queues (negative: no limit). Over the
// limit, connection.open fails with 530 NOT_ALLOWED and queue.declare of a new queue with 406
// PRECONDITION_FAILED; existing connections and queues stay. Error: ErrNoVHost.
func (s *Server) SetVHostLimits(name string, l VHostLimits) error {
	s.mu.Lock()
	v := s.vhosts[name]
	old, had := s.sec.vhostLimits[name]
	s.mu.Unlock()
	if v == nil {
		return fmt.Errorf("%w: '%s'", ErrNoVHost, name)
	}
	if had && old == l {
		return nil
	}
	_, err := s.propose(vhostLimitsRecord(name, l))
	return err
}

// VHostLimitsOf returns a vhost's limits (NoVHostLimits when none were set).
func (s *Server) VHostLimitsOf(name string) (VHostLimits, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vhosts[name] == nil {
		return VHostLimits{}, fmt.Errorf("%w: '%s'", ErrNoVHost, name)
	}
	if l, ok := s.sec.vhostLimits[name]; ok {
		return l, nil
	}
	return NoVHostLimits, nil
}

// ---- management API: permissions

func (s *Server) checkUserVHost(user, vh string) error {
	if _, ok := s.users.Lookup(user); !ok {
		return fmt.Errorf("%w: '%s'", ErrNoUser, user)
	}
	if s.VHost(vh) == nil {
		return fmt.Errorf("%w: '%s'", ErrNoVHost, vh)
	}
	return nil
}

// SetPermissions sets p.User's configure/write/read expressions in p.VHost (RabbitMQ's
// set_permissions), replacing earlier ones. They apply to the user's next operations, also on
// open connections. Errors: ErrNoUser, ErrNoVHost, ErrBadRegexp.
func (s *Server) SetPermissions(p Permission) error {
	if err := s.checkUserVHost(p.User, p.VHost); err != nil {
		return err
	}
	if _, err := newGrant(p); err != nil {
		return err
	}
	if g := s.acl.lookup(p.VHost, p.User); g != nil && g.p == p {
		return nil
	}
	_, err := s.propose(permissionRecord(p))
	return err
}

// ClearPermissions removes user's permissions in vh (new connections to vh are then refused;
// open ones get 403 on their next operation). Clearing absent permissions succeeds. Errors:
// ErrNoUser, ErrNoVHost.
func (s *Server) ClearPermissions(vh, user string) error {
	if err := s.checkUserVHost(user, vh); err != nil {
		return err
	}
	if s.acl.lookup(vh, user) == nil {
		return nil
	}
	_, err := s.propose(meta.Record{Kind: meta.KindPermission, Delete: true, VHost: vh, Name: user})
	return err
}

// Permissions returns every permission, sorted by vhost then user.
func (s *Server) Permissions() []Permission {
	ps, _ := s.acl.list()
	return ps
}

// SetTopicPermissions sets p.User's topic permission on exchange p.Exchange in p.VHost
// (RabbitMQ's set_topic_permissions), replacing an earlier one for that exchange. Errors:
// ErrNoUser, ErrNoVHost, ErrBadRegexp.
func (s *Server) SetTopicPermissions(p TopicPermission) error {
	if err := s.checkUserVHost(p.User, p.VHost); err != nil {
		return err
	}
	if _, err := newTopicGrant(p); err != nil {
		return err
	}
	if g := s.acl.topic(p.VHost, p.User, p.Exchange); g != nil && g.p == p {
		return nil
	}
	_, err := s.propose(topicPermissionRecord(p))
	return err
}

// ClearTopicPermissions removes user's topic permission on exchange x in vh, or all of the
// user's topic permissions in vh when x is "". Errors: ErrNoUser, ErrNoVHost.
func (s *Server) ClearTopicPermissions(vh, user, x string) error {
	if err := s.checkUserVHost(user, vh); err != nil {
		return err
	}
	_, err := s.propose(meta.Record{Kind: meta.KindTopicPermission, Delete: true, VHost: vh, Name: user,
		Fields: amqp.Table{"x": x}})
	return err
}

// TopicPermissions returns every topic permission, sorted by vhost, user, exchange.
func (s *Server) TopicPermissions() []TopicPermission {
	_, ts := s.acl.list()
	return ts
}
