package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/queue"

	"github.com/warrenmq/warren/broker/session"
	"github.com/warrenmq/warren/broker/vhost"
)

// Version is Warren's version (connection.start's platform and information, management's
// product_version).
const Version = "0.1.0"

// CompatVersion is the RabbitMQ version whose behaviour Warren mirrors. connection.start says
// product "RabbitMQ" with this version, and the management API reports it as rabbitmq_version:
// clients and tools choose protocol semantics from these (kombu, and so Celery, reads the
// basic.qos global flag RabbitMQ's way only from a product "RabbitMQ" of version 3.3 or later;
// Warren implements RabbitMQ's reading). Warren's own name and version are in the platform and
// information properties.
const CompatVersion = "3.10.8"

// Config configures a Server. The zero value is a working single node: zero fields take their
// values from DefaultConfig (config.go), where the defaults below are set.
type Config struct {
	AMQPListen string // default 127.0.0.1:5672
	DataDir    string // default ./data
	Log        zerolog.Logger

	FrameMax       uint32 // default 131072
	ChannelMax     uint16 // default 2047
	Heartbeat      uint16 // seconds, default 60
	NoHeartbeat    bool   // offer heartbeat 0
	MaxMessageSize int    // default 128 MiB
	// MemoryBudget bounds the memory of messages waiting in queues, node-wide (default: a
	// quarter of physical memory); MaxQueueMemory bounds one queue's (default 16 MiB). Beyond
	// them, messages wait on disk in the queue's spill and are read back in order.
	MemoryBudget   int64
	MaxQueueMemory int64
	// MemoryHighWatermark (fraction of physical memory, default 0.4, as RabbitMQ's
	// vm_memory_high_watermark) and DiskFreeLimit (bytes, default 50 MB) raise resource
	// alarms that block publishers. Negative turns the check off.
	MemoryHighWatermark float64
	DiskFreeLimit       int64
	HandshakeTimeout    time.Duration // default 10s
	// SendTimeout closes a connection whose socket takes no bytes for this long (a client
	// that stopped reading); its unacked messages go back to their queues. Default 30s, as
	// RabbitMQ's send timeout; negative: no bound.
	SendTimeout time.Duration

	// Storage persists definitions and durable queues' messages; nil keeps everything in
	// memory. cmd/warren passes an adapter over wal.Manager.
	Storage Storage
	// MetaStore, when set, returns the metadata store the node proposes every metadata
	// change to, applying to app (a replicated store, say). Nil: a meta.LogStore over
	// Storage.MetaLog(), or a meta.MemoryStore without Storage.
	MetaStore func(app meta.Applier) meta.Store
	// Remote, in a cluster, reaches the queues homed on other nodes (broker/remote); nil on a
	// single node.
	Remote vhost.Remote
	// QueueMasterLocator is where a new classic queue lives when neither its
	// x-queue-master-locator argument nor a policy says (RabbitMQ's queue_master_locator):
	// client-local (the default), min-masters or random. Only a cluster has a choice.
	QueueMasterLocator string
	// Replicas, in a cluster, replicates the logs of quorum queues (nil: a single node, where
	// a quorum queue is a durable queue).
	Replicas vhost.ReplicaHost

	// DefaultUser / DefaultPass create the initial user (default guest/guest) when the node
	// starts with no metadata (a new data folder), with vhost "/" and full permissions there,
	// as RabbitMQ's default_user. It may connect only from loopback unless LoopbackUsers is
	// set to an empty list.
	DefaultUser string
	DefaultPass string
	// LoopbackUsers may connect only from a loopback address (nil: ["guest"], as RabbitMQ).
	LoopbackUsers []string

	// TLS, when set, enables the amqps listener on AMQPSListen (default 127.0.0.1:5671) and
	// SASL EXTERNAL there. cmd/warren builds it: TLS 1.2+, client certificates verified
	// against --tls-ca when given.
	TLS         *tls.Config
	AMQPSListen string
	// CertLoginFrom names EXTERNAL users: "distinguished_name" (RabbitMQ's default) or
	// "common_name".
	CertLoginFrom string
	// MaxConnections bounds the node's client sockets (0: no bound). As RabbitMQ's
	// connection_max (ranch), the listeners stop accepting while the node is at the bound:
	// further clients wait in the kernel's backlog until a connection ends.
	MaxConnections int
}

// Storage is the broker's persistence: the vhost-level seams plus what recovery needs.
type Storage interface {
	vhost.Storage
	// MetaLog is the log of the metadata store (users, vhosts, permissions, limits,
	// policies, exchanges, queues, bindings): one live record per entity.
	MetaLog() meta.Log
	// SweepQueueLogs removes every queue log that was not opened (or tried) since the storage
	// was created: after recovery, those are logs of deleted queues that a crash left behind.
	SweepQueueLogs() error
	// Close flushes and closes every log.
	Close() error
}

// Server is one broker node.
type Server struct {
	cfg   Config
	log   zerolog.Logger
	env   *session.Env
	users *Users
	acl   *acl          // permissions and topic permissions (auth.go)
	meta  meta.Store    // every metadata change goes through it (apply.go)
	slots chan struct{} // one token per open socket when MaxConnections > 0
	quit  chan struct{} // closed by Close

	mu     sync.Mutex
	vhosts map[string]*vhost.VHost
	conns  map[*session.Conn]struct{}
	sec    security // vhost limits, connections per vhost and user (auth.go)
	ln     net.Listener
	tlsLn  net.Listener
	closed bool

	budget     *queue.Budget
	alarm      alarms
	chans      userChannels
	alarmStop  chan struct{}
	lastFreeOS time.Time // the alarm loop's (returnMemory)
	nextConnID atomic.Uint64
	draining   atomic.Bool  // Drain: new clients are turned away
	recovering atomic.Bool  // recover runs: vhosts created meanwhile restore (BeginRestore)
	churn      Churn        // counters.go
	sockets    atomic.Int64 // client sockets open
	wg         sync.WaitGroup
}

// New creates a server; Start begins listening.
func New(cfg Config) (*Server, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Log.With().Str("component", "broker").Logger(),
		vhosts: map[string]*vhost.VHost{},
		conns:  make(map[*session.Conn]struct{}),
		users:  NewUsers(),
		acl:    newACL(),
		quit:   make(chan struct{}),
		sec:    newSecurity(),
		budget: &queue.Budget{Limit: cfg.MemoryBudget, MaxQueueBytes: cfg.MaxQueueMemory},
	}
	// The memory budget is also the Go runtime's soft limit (plus room for connections, buffers
	// and the logs' tail segments), so garbage from a fast publisher does not grow the process
	// far past it. GOMEMLIMIT in the environment wins.
	if os.Getenv("GOMEMLIMIT") == "" && cfg.MemoryBudget > 0 {
		debug.SetMemoryLimit(cfg.MemoryBudget + memoryLimitSlack)
	}
	if cfg.MaxConnections > 0 {
		s.slots = make(chan struct{}, cfg.MaxConnections)
	}
	s.users.SetLoopbackUsers(cfg.LoopbackUsers)
	switch {
	case cfg.MetaStore != nil:
		s.meta = cfg.MetaStore(s)
	case cfg.Storage != nil:
		s.meta = meta.NewLogStore(cfg.Storage.MetaLog(), s, s.log)
	default:
		s.meta = meta.NewMemoryStore(s)
	}
	s.env = &session.Env{
		Log:              cfg.Log.With().Str("component", "session").Logger(),
		VHost:            s.VHost,
		Authenticate:     s.users.Authenticate,
		Registered:       s.register,
		Draining:         s.draining.Load,
		Unregistered:     s.unregister,
		Product:          "RabbitMQ",
		Version:          CompatVersion,
		Platform:         "Warren " + Version + " (Go)",
		FrameMax:         cfg.FrameMax,
		ChannelMax:       cfg.ChannelMax,
		Heartbeat:        cfg.Heartbeat,
		MaxMessageSize:   cfg.MaxMessageSize,
		HandshakeTimeout: cfg.HandshakeTimeout,
		SendTimeout:      cfg.SendTimeout,
		Budget:           s.budget,
	}
	s.env.AuthenticateExternal = s.users.AuthenticateExternal
	s.env.CertLoginFrom = cfg.CertLoginFrom
	s.env.Authorize = s.authorize
	s.env.OpenVHost = s.openVHost
	s.env.Unregistered = func(c *session.Conn) { s.unregister(c); s.untrack(c) }
	s.env.Alarm = s.alarm.Alarm
	s.env.ChannelOpen, s.env.ChannelClosed = s.channelOpen, s.channelClosed
	s.alarm.dir = cfg.DataDir
	if cfg.MemoryHighWatermark > 0 {
		s.alarm.memLimit = int64(cfg.MemoryHighWatermark * float64(physicalMemory()))
		if lim, ok := cgroupMemoryLimit("/sys/fs/cgroup", "/proc/self/cgroup"); ok && lim < machineMemory() {
			s.log.Info().Int64("cgroup_limit", lim).Int64("watermark", s.alarm.memLimit).Msg("memory limit of the cgroup used for the memory watermark")
		}
	}
	if cfg.DiskFreeLimit > 0 {
		s.alarm.diskLimit = cfg.DiskFreeLimit
	}
	s.alarmStop = make(chan struct{})
	s.watchWriteFaults(cfg.Storage)
	s.env.Defaults()
	if rf, ok := cfg.Remote.(replyForwarder); ok {
		// Direct reply-to across nodes: reply addresses name this node, and a reply for a
		// channel on another node goes there.
		s.env.Replies.Node = rf.Node()
		s.env.Replies.Forward = rf.SendReply
		rf.SetReplies(s.env.Replies.Deliver)
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

// memoryLimitSlack is what the runtime may use beyond the message budget.
const memoryLimitSlack = 48 << 20

// newVHost creates a vhost wired to the node's storage and memory budget (not registered).
func (s *Server) newVHost(name string) *vhost.VHost {
	v := vhost.New(name, vstore(s.cfg.Storage))
	v.Budget = s.budget
	v.Meta = s.meta
	v.Replicas = s.cfg.Replicas
	v.Counters = &s.churn.Queues
	v.Log = s.log.With().Str("vhost", name).Logger()
	v.Remote = s.cfg.Remote
	v.DefaultLocator = s.cfg.QueueMasterLocator
	return v
}

// vstore converts a possibly nil Storage to a possibly nil vhost.Storage (avoiding a non-nil
// interface holding a nil pointer).
func vstore(s Storage) vhost.Storage {
	if s == nil {
		return nil
	}
	return s
}

// recover replays the metadata store (which recreates durable definitions and, with them,
// the messages of durable queues: a queue whose log is damaged stays out of service, logged,
// and every other queue recovers), first seeding a new node or importing an older version's
// security file.
func (s *Server) recover() error {
	s.recovering.Store(true)
	defer s.recovering.Store(false)
	var imp *Definitions
	seed := func(held []meta.Record) ([]meta.Record, error) {
		out := legacyVHosts(held)
		for _, r := range held {
			if r.Kind == meta.KindInit {
				return out, nil
			}
		}
		if s.cfg.Storage != nil {
			d, empty, err := s.readSecurityFile()
			if err != nil {
				return nil, err
			}
			if empty {
				s.log.Warn().Str("file", securityFile).Msg("users and permissions file of an older version is empty (a write cut short): starting with the default user")
			}
			if d != nil {
				imp = d // imported once every definition is back, through the usual checks
				return out, nil
			}
		}
		return append(out, s.defaultRecords()...), nil
	}
	if err := s.meta.Recover(seed); err != nil {
		return err
	}
	if imp != nil {
		// Policies are left out: the definitions log has always been their home, and a
		// security file could hold a deleted one (issue 11, item 2).
		imp.Policies, imp.Queues, imp.Exchanges, imp.Bindings = nil, nil, nil, nil
		if err := s.LoadDefinitions(imp); err != nil {
			return fmt.Errorf("broker: importing %s: %w", securityFile, err)
		}
		if _, err := s.propose(meta.Record{Kind: meta.KindInit}); err != nil {
			return err
		}
		s.log.Info().Str("file", securityFile).Int("users", len(imp.Users)).Int("vhosts", len(imp.VHosts)).
			Msg("users, vhosts and permissions imported into the metadata log")
	}
	if s.cfg.Storage != nil { // imported now or before (a crash kept the name), or empty
		if _, err := os.Stat(filepath.Join(s.cfg.DataDir, securityFile)); err == nil {
			if err := s.retireSecurityFile(); err != nil {
				s.log.Warn().Err(err).Str("file", securityFile).Msg("renaming the imported file failed")
			}
		}
	}
	var msgs int
	for _, v := range s.VHosts() {
		v.ApplyPolicies()
		v.FinishRestore() // exchanges' deduplication windows, from the queues' logs
		for _, q := range v.Queues() {
			r, _, _ := q.Counts()
			msgs += r
		}
	}
	if st := s.cfg.Storage; st != nil {
		if err := st.SweepQueueLogs(); err != nil {
			s.log.Warn().Err(err).Msg("sweeping unused queue logs failed")
		}
		s.log.Info().Int("vhosts", len(s.VHosts())).Int("messages", msgs).Msg("recovered")
	}
	return nil
}

// defaultRecords are a new node's metadata: vhost "/", the default user (administrator) and
// its full permissions there, and the mark that the node has been seeded.
func (s *Server) defaultRecords() []meta.Record {
	u := User{Name: s.cfg.DefaultUser, PasswordHash: HashPassword(s.cfg.DefaultPass), HashingAlgorithm: HashSHA256, Tags: []string{"administrator"}}
	return []meta.Record{
		{Kind: meta.KindVHost, Name: "/"},
		userRecord(u),
		permissionRecord(Permission{User: u.Name, VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}),
		{Kind: meta.KindInit},
	}
}

// legacyVHosts returns records creating the vhosts that held records refer to but no record
// creates: a definitions log written before vhosts were records of their own.
func legacyVHosts(held []meta.Record) []meta.Record {
	have := map[string]bool{}
	for _, r := range held {
		if r.Kind == meta.KindVHost && !r.Delete {
			have[r.Name] = true
		}
	}
	var out []meta.Record
	for _, r := range held {
		if r.VHost != "" && !have[r.VHost] {
			have[r.VHost] = true
			out = append(out, meta.Record{Kind: meta.KindVHost, Name: r.VHost})
		}
	}
	return out
}

// VHost returns the named virtual host or nil.
func (s *Server) VHost(name string) *vhost.VHost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vhosts[name]
}

// VHosts returns every virtual host.
func (s *Server) VHosts() []*vhost.VHost {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*vhost.VHost, 0, len(s.vhosts))
	for _, v := range s.vhosts {
		out = append(out, v)
	}
	return out
}

// Connections returns the live connections.
func (s *Server) Connections() []*session.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session.Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// register adds a connection that finished its handshake; false once Close has started (Close
// shuts down only the connections it found, and waits for every one).
func (s *Server) register(c *session.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining.Load() {
		// Drain and Close shut down only the connections they found: one that finished its
		// handshake after must not stay.
		return false
	}
	s.conns[c] = struct{}{}
	s.churn.ConnectionsOpened.Add(1)
	return true
}

func (s *Server) unregister(c *session.Conn) {
	s.mu.Lock()
	if _, ok := s.conns[c]; ok {
		s.churn.ConnectionsClosed.Add(1)
	}
	delete(s.conns, c)
	s.mu.Unlock()
}

// Start listens on the AMQP address and accepts connections in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.AMQPListen)
	if err != nil {
		return fmt.Errorf("broker: listen %s: %w", s.cfg.AMQPListen, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.log.Info().Str("addr", ln.Addr().String()).Msg("amqp listening")
	s.wg.Add(1)
	go s.acceptLoop(ln, nil)
	s.checkAlarms() // alarms hold from the first connection on, not from the first tick
	s.wg.Add(1)
	go s.alarmLoop(s.alarmStop)
	if s.cfg.TLS != nil {
		tln, err := net.Listen("tcp", s.cfg.AMQPSListen)
		if err != nil {
			s.Close()
			return fmt.Errorf("broker: listen %s: %w", s.cfg.AMQPSListen, err)
		}
		s.mu.Lock()
		s.tlsLn = tln
		s.mu.Unlock()
		s.log.Info().Str("addr", tln.Addr().String()).Msg("amqps listening")
		s.wg.Add(1)
		go s.acceptLoop(tln, s.cfg.TLS)
	}
	return nil
}

// TLSAddr returns the amqps listener's address (nil without TLS or before Start).
func (s *Server) TLSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// Addr returns the AMQP listener's address (nil before Start).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// acceptLoop serves one listener; with tlsCfg, each socket runs TLS (the handshake happens
// on the connection's first read, under its handshake timeout).
func (s *Server) acceptLoop(ln net.Listener, tlsCfg *tls.Config) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		if s.slots != nil {
			select { // at MaxConnections: stop accepting until a connection ends (ranch)
			case s.slots <- struct{}{}:
			case <-s.quit:
				return
			}
		}
		nc, err := ln.Accept()
		if err != nil && s.slots != nil {
			<-s.slots
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures (e.g. too many open files): back off, as net/http does.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.log.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		if s.draining.Load() {
			// Maintenance: clients go to another node (as RabbitMQ's drained node, whose
			// client listeners are stopped).
			nc.Close()
			if s.slots != nil {
				<-s.slots
			}
			continue
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		if tlsCfg != nil {
			nc = tls.Server(session.PacedConn(nc), tlsCfg)
		}
		c := session.NewConn(s.env, nc, s.nextConnID.Add(1))
		s.wg.Add(1)
		s.sockets.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.sockets.Add(-1)
			c.Serve()
			if s.slots != nil {
				<-s.slots
			}
		}()
	}
}

// Close stops accepting, closes every connection with 320 CONNECTION_FORCED and waits for
// them to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	close(s.alarmStop)
	ln := s.ln
	if s.tlsLn != nil {
		s.tlsLn.Close()
	}
	conns := make([]*session.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range conns {
		c.Shutdown("broker forced connection closure with reason 'shutdown'")
	}
	s.wg.Wait()
	var err error
	if s.cfg.Storage != nil {
		err = s.cfg.Storage.Close()
	}
	s.log.Info().Msg("broker stopped")
	return err
}

// Placements lists the replicated queues of every vhost, by vhost.
func (s *Server) Placements() map[string][]vhost.Placement {
	out := map[string][]vhost.Placement{}
	for _, v := range s.VHosts() {
		if ps := v.Placements(); len(ps) > 0 {
			out[v.Name] = ps
		}
	}
	return out
}

// Drain puts the node in maintenance, as rabbitmq-upgrade drain: new client connections are
// closed at once and every open one gets connection.close 320 CONNECTION_FORCED (clients
// reconnect to another node). The caller first moves the node's queue leaderships away.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining.Store(true) // under s.mu: a connection registers before this, or is refused
	s.mu.Unlock()
	for _, c := range s.Connections() {
		c.Shutdown(session.DrainReason)
	}
	s.log.Info().Msg("node drained: client connections closed, new ones refused")
}

// Revive ends maintenance (rabbitmq-upgrade revive).
func (s *Server) Revive() {
	s.draining.Store(false)
	s.log.Info().Msg("node revived: accepting client connections")
}

// Draining reports whether the node is in maintenance.
func (s *Server) Draining() bool { return s.draining.Load() }

// replyForwarder is the part of a cluster's remote (broker/remote.Node) that carries direct
// reply-to replies between nodes.
type replyForwarder interface {
	Node() string
	SendReply(node, key string, m *message.Message) error
	SetReplies(func(key string, m *message.Message) bool)
}
