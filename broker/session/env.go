// Package session implements AMQP connections and channels: the handshake, tune and heartbeats,
// content assembly, delivery tags and the unacked list, prefetch credit, publisher confirms and
// transactions. Each connection runs two goroutines: a reader that decodes frames and runs the
// channel state machines inline, and a writer that flushes the outbound buffer (write
// coalescing). There is no goroutine per channel.
//
//	env := &session.Env{VHost: reg.Lookup, Authenticate: users.Check, ...}
//	c := session.NewConn(env, netConn, id)
//	go c.Serve() // returns when the connection ends
package session

import (
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker/queue"
	"github.com/warrenmq/warren/broker/vhost"
)

// Env is what a connection needs from the broker around it.
type Env struct {
	Log zerolog.Logger
	// VHost returns the named virtual host or nil.
	VHost func(name string) *vhost.VHost
	// Authenticate checks credentials for a client at remote and returns the user name or an
	// error text (logged, not sent).
	Authenticate func(user, pass string, remote net.Addr) (ok bool, reason string)
	// Authorize checks that user may perform perm on the named resource in vhost, returning
	// nil or an *amqp.Error (403 ACCESS_REFUSED, channel scope). nil Authorize allows all.
	// routingKey is set for publishes to topic exchanges and for binds (topic permissions).
	Authorize func(user, vhost string, perm Perm, kind ResourceKind, name, routingKey string) error
	// AuthenticateExternal, when set, enables SASL EXTERNAL on TLS connections: user is named
	// by the client certificate (see CertLoginFrom); no password is checked.
	AuthenticateExternal func(user string, remote net.Addr) (ok bool, reason string)
	// CertLoginFrom picks the EXTERNAL user name from the client certificate, as RabbitMQ's
	// ssl_cert_login_from: "distinguished_name" (the default, RFC 4514 subject) or "common_name".
	CertLoginFrom string
	// OpenVHost, when set, replaces VHost at connection.open: it checks the vhost, connection
	// limits and the user's access for c (c.User() is set) and returns the vhost or an error
	// (*amqp.Error, connection scope, e.g. 530 NOT_ALLOWED) sent in connection.close. Once it
	// succeeded, Unregistered is called for c when the connection ends, even if the handshake
	// fails afterwards.
	OpenVHost func(c *Conn, vhost string) (*vhost.VHost, error)
	// Alarm returns the active resource alarm's reason ("" when none) and a channel closed
	// when it clears; a connection that publishes during an alarm is blocked until then.
	Alarm func() (reason string, cleared <-chan struct{})
	// ChannelOpen, when set, is asked before each channel.open (a user's max-channels: an
	// *amqp.Error refuses it, closing the connection with 530 as RabbitMQ); ChannelClosed is
	// told when a channel goes away.
	ChannelOpen   func(user string) error
	ChannelClosed func(user string)
	// Replies is the node's direct reply-to registry (created when nil).
	Replies *ReplyRegistry
	// Registered / Unregistered track live connections (for shutdown and management).
	// Registered returns false when the broker is shutting down: the connection is then
	// closed with 320 CONNECTION_FORCED (and Unregistered is still called).
	Registered func(c *Conn) bool
	// Draining reports whether the node is being drained: a connection refused at Registered
	// is then told so (320 with the drain text) rather than of a shutdown.
	Draining     func() bool
	Unregistered func(c *Conn)
	// Stats are the node-wide message counters every channel adds to (nil: none kept).
	Stats *Stats
	// Budget, when set, is the node's memory budget: large message bodies count in it while
	// they are received (queue.Budget.AddInflight).
	Budget *queue.Budget

	// connection.start's server properties: product and version as clients compare them
	// (see broker.CompatVersion), platform naming the broker that actually answers.
	Product  string
	Version  string
	Platform string

	FrameMax         uint32        // offered in connection.tune (default 131072)
	ChannelMax       uint16        // offered (default 2047)
	Heartbeat        uint16        // seconds, offered (default 60)
	MaxMessageSize   int           // bytes (default 128 MiB)
	HandshakeTimeout time.Duration // default 10s
	// SendTimeout bounds how long the socket may take no bytes while the connection has
	// some to send: past it the connection is closed, as RabbitMQ's send timeout (default
	// 30s; negative: no bound).
	SendTimeout    time.Duration
	OutBufferLimit int // bytes buffered for a connection before consumers stop getting credit (default 1 MiB)
	// MaxUnconfirmedBytes bounds a connection's publishes waiting for their log writes
	// (default 64 MiB); past it the connection is not read until the writes complete.
	MaxUnconfirmedBytes int
}

// Perm is one of RabbitMQ's three permissions.
type Perm uint8

// Permissions (RabbitMQ's access control: configure, write, read regular expressions).
const (
	PermConfigure Perm = iota
	PermWrite
	PermRead
)

func (p Perm) String() string {
	return [...]string{"configure", "write", "read"}[p]
}

// ResourceKind is what a permission applies to.
type ResourceKind uint8

// Resource kinds.
const (
	KindQueue ResourceKind = iota
	KindExchange
)

func (k ResourceKind) String() string {
	if k == KindQueue {
		return "queue"
	}
	return "exchange"
}

func (e *Env) setDefaults() {
	if e.Replies == nil {
		e.Replies = &ReplyRegistry{}
	}
	if e.FrameMax == 0 {
		e.FrameMax = 131072
	}
	if e.ChannelMax == 0 {
		e.ChannelMax = 2047
	}
	if e.MaxMessageSize == 0 {
		e.MaxMessageSize = 128 << 20
	}
	if e.HandshakeTimeout == 0 {
		e.HandshakeTimeout = 10 * time.Second
	}
	if e.SendTimeout == 0 {
		e.SendTimeout = 30 * time.Second
	}
	if e.MaxUnconfirmedBytes == 0 {
		e.MaxUnconfirmedBytes = 64 << 20
	}
	if e.OutBufferLimit == 0 {
		e.OutBufferLimit = 1 << 20
	}
	if e.Platform == "" {
		e.Platform = "Warren (Go)"
	}
	if e.Product == "" {
		e.Product = "Warren"
	}
	if e.Stats == nil {
		e.Stats = new(Stats)
	}
}

// Defaults fills zero fields of e with their defaults.
func (e *Env) Defaults() { e.setDefaults() }
