package cluster

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"
)

// StateMachine is what the Raft log is applied to: the broker's metadata. Apply is called in
// log order on every node, live and on replay, and must be deterministic (the same records in
// the same order give the same state and the same results everywhere). Its result goes back to
// the node that proposed the record (an encoded error, or nil for success). Snapshot and
// Restore are never called concurrently with Apply.
type StateMachine interface {
	Apply(index uint64, rec []byte) []byte
	// Snapshot returns the whole state as bytes that Restore accepts.
	Snapshot() ([]byte, error)
	// Restore replaces the whole state with a snapshot's.
	Restore(snapshot []byte) error
}

// Config configures a cluster node. Zero durations take the defaults noted.
type Config struct {
	NodeName        string
	GossipListen    string   // serf (UDP and TCP), host:port
	GossipAdvertise string   // address the others reach gossip at (default: GossipListen)
	RPCListen       string   // node-to-node transport (default: gossip port + 1)
	RPCAdvertise    string   // default: RPCListen, with GossipAdvertise's host if given
	Join            []string // gossip addresses to join, retried until one answers
	// Expect is the number of voters to wait for before the first election (Consul's
	// bootstrap_expect). 0: 1 when Join is empty (a new cluster of one that others join),
	// otherwise never bootstrap (wait to be added by a running cluster).
	Expect   int
	Key      []byte // cluster key (32 bytes); nil: no gossip encryption, open transport
	DataDir  string // Raft's log, stable store and snapshots
	AMQPAddr string // advertised in tags
	HTTPAddr string
	Version  string

	StateMachine StateMachine
	Logger       zerolog.Logger
	// Setup, when set, runs once the transport, gossip and the bus are up and before Raft
	// starts applying the log (queue-log replication hooks in here).
	Setup func(n *Node) error

	// MaxVoters is the most Raft voters; further nodes are non-voters (default 5).
	MaxVoters int
	// HeartbeatTimeout is Raft's leader-contact timeout (default 1 s); elections follow it.
	HeartbeatTimeout time.Duration
	// ProposeTimeout bounds a metadata change without a quorum (default 5 s).
	ProposeTimeout time.Duration
	// FastFailureDetection makes gossip probe more often (tests on loopback).
	FastFailureDetection bool

	// raftStore picks the Raft log and stable stores (storeWAL, storeBolt; storeAuto: a
	// data folder that has a raft.db keeps it, any other uses the faster logStore).
	raftStore string
	// commitTimeout overrides Raft's CommitTimeout; noNudge turns off the barrier that tells
	// followers the commit of a change they forwarded (both for benchmarks).
	commitTimeout time.Duration
	noNudge       bool
}

func (c *Config) validate() error {
	if c.NodeName == "" {
		return errors.New("cluster: a node name is needed")
	}
	if len(c.NodeName) > 200 {
		return errors.New("cluster: node name longer than 200 bytes")
	}
	if c.GossipListen == "" {
		return errors.New("cluster: --cluster-listen is empty")
	}
	if c.StateMachine == nil {
		return errors.New("cluster: no state machine")
	}
	if c.DataDir == "" {
		return errors.New("cluster: no data folder")
	}
	if c.Key != nil && len(c.Key) != KeyLen {
		return fmt.Errorf("cluster: key of %d bytes, want %d", len(c.Key), KeyLen)
	}
	host, port, err := net.SplitHostPort(c.GossipListen)
	if err != nil {
		return fmt.Errorf("cluster: --cluster-listen %q: %w", c.GossipListen, err)
	}
	if c.RPCListen == "" {
		p, err := strconv.Atoi(port)
		if err != nil || p == 0 {
			return fmt.Errorf("cluster: --cluster-listen %q: a fixed port is needed to derive the rpc port", c.GossipListen)
		}
		c.RPCListen = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	if c.Expect == 0 && len(c.Join) == 0 {
		c.Expect = 1
	}
	if c.MaxVoters == 0 {
		c.MaxVoters = 5
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = time.Second
	}
	if c.ProposeTimeout == 0 {
		c.ProposeTimeout = 5 * time.Second
	}
	return nil
}

// advertised returns the address others reach listen at: the advertise address if given, else
// listen with an unspecified host replaced by hostHint's host.
func advertised(listen, advertise, hostHint string) string {
	if advertise != "" {
		return advertise
	}
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		if hh, _, err := net.SplitHostPort(hostHint); err == nil && hh != "" {
			return net.JoinHostPort(hh, p)
		}
	}
	return listen
}
