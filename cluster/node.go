package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

var (
	// ErrNoQuorum: the metadata store cannot commit a change (no Raft leader reachable within
	// the propose timeout: this node is cut off from the majority, or an election is under way).
	ErrNoQuorum = errors.New("the cluster's metadata store has no quorum")
	// ErrUncertain: the leader was lost after the change was sent; it may or may not be applied.
	ErrUncertain = errors.New("the cluster's metadata leader changed while the change was committed; it may or may not have been applied")
)

// Node is this process's membership in a cluster.
type Node struct {
	cfg    Config
	log    zerolog.Logger
	tr     *transport
	ml     *membership
	raft   *raft.Raft
	fsm    *fsm
	bus    *Bus
	store  io.Closer // the Raft log and stable stores
	id     string
	dataID string

	bootstrapped bool // this node had or created Raft state (reconciler only)
	nudge        nudger

	fwdMu sync.Mutex
	fwd   map[string][]net.Conn // idle forwarding connections per leader address

	lease    time.Duration // Raft's leader lease: the shortest election timeout it allows
	electMu  sync.Mutex
	hurrying bool // hurryElection shortened the election timeout

	stop chan struct{}
	wg   sync.WaitGroup
}

// Start opens the transport, joins gossip and starts Raft. It returns once the node runs; the
// cluster may not have a leader yet.
func Start(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With().Str("component", "cluster").Str("node", cfg.NodeName).Logger()
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "snapshots"), 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	idb := make([]byte, 8)
	rand.Read(idb)
	n := &Node{cfg: cfg, log: log, fsm: newFSM(cfg.StateMachine), id: hex.EncodeToString(idb), fwd: map[string][]net.Conn{}, stop: make(chan struct{})}

	tr, err := listenTransport(cfg.RPCListen, cfg.NodeName, cfg.Key, log)
	if err != nil {
		return nil, err
	}
	n.tr = tr
	rpcAddr := advertised(tr.addr().String(), cfg.RPCAdvertise, cfg.GossipAdvertise)
	ok := false
	defer func() {
		if !ok {
			n.closeParts()
		}
	}()

	logStore, stable, closer, storeKind, err := openRaftStores(cfg.DataDir, cfg.raftStore, log)
	if err != nil {
		return nil, err
	}
	n.store = closer
	logs, err := raft.NewLogCache(1024, logStore)
	if err != nil {
		return nil, err
	}
	hl := hcLogger(cfg.Logger, "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, "snapshots"), 2, hl)
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshots: %w", err)
	}
	advAddr, err := net.ResolveTCPAddr("tcp", rpcAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: rpc address %q: %w", rpcAddr, err)
	}
	sl := newStreamLayer(tr, advAddr)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: raftDialer{sl, n.stop}, MaxPool: 3, Timeout: 5 * time.Second, Logger: hl,
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeName)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.HeartbeatTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	n.lease = rc.LeaderLeaseTimeout
	// Followers learn the commit index from the leader's next AppendEntries, sent at least
	// every CommitTimeout: a change forwarded from a follower is answered once that follower
	// applied it, so this bounds its latency (the default 50 ms made a declare on a follower
	// take 80 ms). The cost is an empty AppendEntries per follower every 2-4 ms.
	rc.CommitTimeout = 2 * time.Millisecond
	if cfg.commitTimeout > 0 {
		rc.CommitTimeout = cfg.commitTimeout
	}
	rc.SnapshotThreshold = 16384
	rc.TrailingLogs = 10240
	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft state: %w", err)
	}
	n.bootstrapped = existing
	n.dataID, err = loadDataID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	tags := map[string]string{
		tagData:    n.dataID,
		tagID:      n.id,
		tagRPC:     rpcAddr,
		tagAMQP:    cfg.AMQPAddr,
		tagHTTP:    cfg.HTTPAddr,
		tagVersion: cfg.Version,
		tagExpect:  strconv.Itoa(cfg.Expect),
		tagStarted: strconv.FormatInt(time.Now().Unix(), 10),
	}
	ml, err := startMembership(&cfg, tags, log)
	if err != nil {
		return nil, err
	}
	n.ml = ml
	n.bus = newBus(n)
	if cfg.Setup != nil {
		// Before Raft: applying the log (a snapshot is restored inside NewRaft) may already
		// need what Setup builds (queue-log replication).
		if err := cfg.Setup(n); err != nil {
			return nil, err
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, stable, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft: %w", err)
	}
	n.raft = r
	tr.handle(KindPropose, n.serveForward)
	ok = true
	leaderCh := make(chan raft.Observation, 16)
	obs := raft.NewObserver(leaderCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(obs) // before anything can be elected
	n.wg.Add(2)
	go n.reconcileLoop()
	go n.logLeaderChanges(leaderCh, obs)
	log.Info().Str("gossip", cfg.GossipListen).Str("rpc", rpcAddr).Bool("raft_state", existing).Str("raft_store", storeKind).Int("expect", cfg.Expect).Bool("key", cfg.Key != nil).Msg("cluster node started")
	return n, nil
}

// logLeaderChanges logs each change of the metadata (Raft) leader as this node sees it, at
// info: an operator reading one node's log can follow elections.
func (n *Node) logLeaderChanges(ch <-chan raft.Observation, obs *raft.Observer) {
	defer n.wg.Done()
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.stop:
			return
		case o := <-ch:
			lo := o.Data.(raft.LeaderObservation)
			if lo.LeaderID == "" {
				n.log.Info().Msg("raft leader lost: no metadata leader until an election ends")
				continue
			}
			n.log.Info().Str("leader", string(lo.LeaderID)).Bool("self", string(lo.LeaderID) == n.cfg.NodeName).Uint64("term", n.raft.CurrentTerm()).Msg("raft leader changed")
		}
	}
}

// raftDialer adds raft's Dial to the stream layer.
//
// A refused connection (the peer's process is down, maybe restarting) is tried again for up
// to refusedPatience before it fails. hashicorp/raft backs its replication to a peer off after
// each failure (10 ms, doubling, up to 41 s, reset only by a success): failing at once, a few
// seconds of a peer's restart (kill -9, a wiped disk) piled up enough failures that the leader
// slept through the peer's return for half a minute (warren-chaos, seed 100030). Failing
// slowly keeps the count, and so the back-off, small.
type raftDialer struct {
	*streamLayer
	stop chan struct{}
}

// refusedPatience is how long a refused Raft connection is tried again.
var refusedPatience = 2 * time.Second

func (d raftDialer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(min(timeout, refusedPatience))
	for {
		c, _, err := d.t.dial(string(addr), KindRaft, timeout)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return c, err
		}
		select {
		case <-d.stop:
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Fatal delivers an error that must stop the node (its name is taken by a live node).
func (n *Node) Fatal() <-chan error { return n.ml.fatal }

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.NodeName }

// RPCAddr is the node-to-node address this node listens on.
func (n *Node) RPCAddr() string { return n.tr.addr().String() }

// GossipAddr is the bound gossip address.
func (n *Node) GossipAddr() string {
	lm := n.ml.serf.LocalMember()
	return net.JoinHostPort(lm.Addr.String(), strconv.Itoa(int(lm.Port)))
}

// Bus is the node's message bus to the other nodes.
func (n *Node) Bus() *Bus { return n.bus }

// DataID is the id of this node's data folder (Member.DataID).
func (n *Node) DataID() string { return n.dataID }

// Members returns every node gossip knows, sorted by name.
func (n *Node) Members() []Member { return n.ml.members() }

// Close leaves gossip and stops Raft (the node stays a member of the Raft configuration: a
// stopped node is not a removed one).
func (n *Node) Close() error {
	close(n.stop)
	n.wg.Wait()
	n.closeParts()
	return nil
}

func (n *Node) closeParts() {
	if n.bus != nil {
		n.bus.close()
	}
	if n.ml != nil {
		n.ml.close()
	}
	if n.raft != nil {
		n.raft.Shutdown().Error()
		n.nudge.wait()
	}
	if n.tr != nil {
		n.tr.close()
	}
	n.fwdMu.Lock()
	for _, cs := range n.fwd {
		for _, c := range cs {
			c.Close()
		}
	}
	n.fwd = map[string][]net.Conn{}
	n.fwdMu.Unlock()
	if n.store != nil {
		n.store.Close()
	}
}

// ---- proposals

// Propose commits rec to the metadata log and returns the state machine's result once this
// node has applied it. From a follower the change is forwarded to the Raft leader. Without a
// reachable leader it fails with ErrNoQuorum within the propose timeout (or ctx's deadline).
func (n *Node) Propose(ctx context.Context, rec []byte) ([]byte, error) {
	deadline := time.Now().Add(n.cfg.ProposeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	backoff := 10 * time.Millisecond
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, ErrNoQuorum
		}
		if n.raft.State() == raft.Leader {
			f := n.raft.Apply(rec, left)
			err := f.Error()
			switch {
			case err == nil:
				res, _ := f.Response().([]byte)
				return res, nil
			case errors.Is(err, raft.ErrNotLeader):
				// not enqueued: try again through the new leader
			case errors.Is(err, raft.ErrEnqueueTimeout):
				return nil, ErrNoQuorum
			case errors.Is(err, raft.ErrLeadershipLost):
				return nil, ErrUncertain
			case errors.Is(err, raft.ErrRaftShutdown):
				return nil, err
			default:
				return nil, fmt.Errorf("cluster: %w", err)
			}
		} else if addr, _ := n.raft.LeaderWithID(); addr != "" {
			res, idx, sent, err := n.forward(string(addr), opApply, rec, deadline)
			if err == nil {
				if err := n.waitApplied(ctx, idx, deadline); err != nil {
					return nil, err
				}
				return res, nil
			}
			if sent {
				return nil, err
			}
			n.log.Debug().Err(err).Str("leader", string(addr)).Msg("forwarding a metadata change failed, retrying")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-n.stop:
			return nil, raft.ErrRaftShutdown
		case <-time.After(min(backoff, time.Until(deadline))):
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

// waitApplied waits until this node's state machine has applied index idx.
func (n *Node) waitApplied(ctx context.Context, idx uint64, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		a, ch := n.fsm.appliedIndex()
		if a >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return ErrNoQuorum
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return raft.ErrRaftShutdown
		}
	}
}

// CatchUp waits, at most d, until this node has applied every log entry it holds (committed,
// or received and about to be committed: the leader sends a change to every follower at once,
// so a follower usually holds it before the change's proposer answers its client), and reports
// whether it had to wait. It sends nothing: a lookup that missed calls it, for what another
// node changed a moment ago.
func (n *Node) CatchUp(d time.Duration) bool {
	idx := max(n.raft.CommitIndex(), n.raft.LastIndex())
	if a, _ := n.fsm.appliedIndex(); a >= idx {
		return false
	}
	n.waitApplied(context.Background(), idx, time.Now().Add(d))
	return true
}

// AppliedIndex is the index of the last log entry this node applied.
func (n *Node) AppliedIndex() uint64 { a, _ := n.fsm.appliedIndex(); return a }

// Forward wire format. Request: op byte, u32 length, payload (a record, or a node name to
// remove). Response: status byte, u64 index, u32 length, payload (the result, or an error
// text).
const (
	opApply  = 0
	opRemove = 1

	fwdOK        = 0
	fwdNotLeader = 1
	fwdError     = 2
	maxRecord    = 64 << 20
)

// forward sends rec to the leader at addr. sent reports whether the leader may have received
// it (then the caller must not retry: the change could be applied twice).
func (n *Node) forward(addr string, op byte, rec []byte, deadline time.Time) (res []byte, idx uint64, sent bool, err error) {
	c, err := n.fwdConn(addr, deadline)
	if err != nil {
		return nil, 0, false, err
	}
	c.SetDeadline(deadline)
	hdr := binary.BigEndian.AppendUint32(append(make([]byte, 0, 5+len(rec)), op), uint32(len(rec)))
	if _, err := c.Write(append(hdr, rec...)); err != nil {
		c.Close()
		// A write to a pooled connection the leader closed fails before anything was read.
		return nil, 0, false, err
	}
	var rh [13]byte
	if _, err := io.ReadFull(c, rh[:]); err != nil {
		c.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, 0, true, ErrNoQuorum
		}
		return nil, 0, true, ErrUncertain
	}
	status, idx, l := rh[0], binary.BigEndian.Uint64(rh[1:9]), binary.BigEndian.Uint32(rh[9:13])
	if l > maxRecord {
		c.Close()
		return nil, 0, true, errors.New("cluster: oversized forward answer")
	}
	payload := make([]byte, l)
	if _, err := io.ReadFull(c, payload); err != nil {
		c.Close()
		return nil, 0, true, ErrUncertain
	}
	n.putFwdConn(addr, c)
	switch status {
	case fwdOK:
		return payload, idx, true, nil
	case fwdNotLeader:
		return nil, 0, false, raft.ErrNotLeader
	default:
		msg := string(payload)
		switch msg {
		case ErrNoQuorum.Error():
			return nil, 0, true, ErrNoQuorum
		case ErrUncertain.Error():
			return nil, 0, true, ErrUncertain
		}
		return nil, 0, true, errors.New(msg)
	}
}

func (n *Node) fwdConn(addr string, deadline time.Time) (net.Conn, error) {
	n.fwdMu.Lock()
	if cs := n.fwd[addr]; len(cs) > 0 {
		c := cs[len(cs)-1]
		n.fwd[addr] = cs[:len(cs)-1]
		n.fwdMu.Unlock()
		return c, nil
	}
	n.fwdMu.Unlock()
	c, _, err := n.tr.dial(addr, KindPropose, min(time.Until(deadline), 2*time.Second))
	return c, err
}

func (n *Node) putFwdConn(addr string, c net.Conn) {
	c.SetDeadline(time.Time{})
	n.fwdMu.Lock()
	select {
	case <-n.stop:
		c.Close()
	default:
		if len(n.fwd[addr]) < 8 {
			n.fwd[addr] = append(n.fwd[addr], c)
		} else {
			c.Close()
		}
	}
	n.fwdMu.Unlock()
}

// serveForward is the leader's side of forwarded proposals.
func (n *Node) serveForward(c net.Conn, peer string) {
	defer c.Close()
	var lb [5]byte
	for {
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return
		}
		op, l := lb[0], binary.BigEndian.Uint32(lb[1:])
		if l > maxRecord {
			n.log.Warn().Str("peer", peer).Uint32("bytes", l).Msg("oversized forwarded change")
			return
		}
		rec := make([]byte, l)
		if _, err := io.ReadFull(c, rec); err != nil {
			return
		}
		status, idx, payload := byte(fwdOK), uint64(0), []byte(nil)
		if n.raft.State() != raft.Leader {
			status = fwdNotLeader
		} else {
			var f raft.IndexFuture
			var af raft.ApplyFuture
			if op == opRemove {
				f = n.raft.RemoveServer(raft.ServerID(rec), 0, n.cfg.ProposeTimeout)
			} else {
				af = n.raft.Apply(rec, n.cfg.ProposeTimeout)
				f = af
			}
			switch err := f.Error(); {
			case err == nil:
				if af != nil {
					payload, _ = af.Response().([]byte)
					if !n.cfg.noNudge {
						n.nudge.kick(n.raft, n.cfg.ProposeTimeout) // the sender waits to apply it
					}
				}
				idx = f.Index()
			case errors.Is(err, raft.ErrNotLeader):
				status = fwdNotLeader
			case errors.Is(err, raft.ErrEnqueueTimeout):
				status, payload = fwdError, []byte(ErrNoQuorum.Error())
			case errors.Is(err, raft.ErrLeadershipLost):
				status, payload = fwdError, []byte(ErrUncertain.Error())
			default:
				status, payload = fwdError, []byte(err.Error())
			}
		}
		out := make([]byte, 13, 13+len(payload))
		out[0] = status
		binary.BigEndian.PutUint64(out[1:9], idx)
		binary.BigEndian.PutUint32(out[9:13], uint32(len(payload)))
		if _, err := c.Write(append(out, payload...)); err != nil {
			return
		}
	}
}

// ---- reconciliation: bootstrap, voters, our own tag

func (n *Node) reconcileLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	waitingSince := time.Now()
	warned := false
	for {
		select {
		case <-n.stop:
			return
		case <-n.ml.changed:
		case <-tick.C:
		case <-n.raft.LeaderCh():
		}
		n.reconcile()
		if !n.bootstrapped && !warned && time.Since(waitingSince) > 30*time.Second {
			warned = true
			n.log.Warn().Int("expect", n.cfg.Expect).Msg("still waiting to form or join a cluster: no running cluster has added this node (start the first nodes with --cluster-expect N)")
		}
	}
}

func (n *Node) reconcile() {
	members := n.ml.members()
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return
	}
	conf := cf.Configuration()
	in := map[raft.ServerID]raft.Server{}
	for _, s := range conf.Servers {
		in[s.ID] = s
	}
	if _, ok := in[raft.ServerID(n.cfg.NodeName)]; ok {
		n.bootstrapped = true
		n.ml.setTag(tagRaft, "1")
	}
	if !n.bootstrapped {
		n.maybeBootstrap(members)
		return
	}
	if n.raft.State() != raft.Leader {
		return
	}
	voters := 0
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	for _, m := range members {
		if m.Status != "alive" || m.RPC == "" {
			continue
		}
		s, known := in[raft.ServerID(m.Name)]
		switch {
		case !known || (s.Suffrage == raft.Nonvoter && voters < n.cfg.MaxVoters) || s.Address != raft.ServerAddress(m.RPC):
			if voters < n.cfg.MaxVoters || (known && s.Suffrage == raft.Voter) {
				if err := n.raft.AddVoter(raft.ServerID(m.Name), raft.ServerAddress(m.RPC), 0, 5*time.Second).Error(); err != nil {
					n.log.Warn().Err(err).Str("member", m.Name).Msg("adding a raft voter failed")
					return
				}
				if !known || s.Suffrage != raft.Voter {
					voters++
				}
				n.log.Info().Str("member", m.Name).Str("rpc", m.RPC).Msg("raft voter added")
			} else if !known || s.Address != raft.ServerAddress(m.RPC) {
				if err := n.raft.AddNonvoter(raft.ServerID(m.Name), raft.ServerAddress(m.RPC), 0, 5*time.Second).Error(); err != nil {
					n.log.Warn().Err(err).Str("member", m.Name).Msg("adding a raft non-voter failed")
					return
				}
				n.log.Info().Str("member", m.Name).Msg("raft non-voter added")
			}
		}
	}
}

// maybeBootstrap forms a new cluster once Expect nodes that expect the same are alive and none
// of them is in a cluster already. Each of them computes the same configuration (the first
// Expect names in order), so their bootstraps agree.
func (n *Node) maybeBootstrap(members []Member) {
	if n.cfg.Expect <= 0 {
		return
	}
	var cand []Member
	for _, m := range members {
		if m.InRaft {
			return // a cluster exists: wait for its leader to add us
		}
		if m.Status == "alive" && m.RPC != "" && m.expect == n.cfg.Expect {
			cand = append(cand, m)
		}
	}
	if len(cand) < n.cfg.Expect {
		return
	}
	sort.Slice(cand, func(i, j int) bool { return cand[i].Name < cand[j].Name })
	cand = cand[:n.cfg.Expect]
	var conf raft.Configuration
	self := false
	for _, m := range cand {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.RPC)})
		self = self || m.Name == n.cfg.NodeName
	}
	if !self {
		return
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		n.log.Warn().Err(err).Msg("raft bootstrap failed")
		return
	}
	n.bootstrapped = true
	names := make([]string, len(cand))
	for i, m := range cand {
		names[i] = m.Name
	}
	n.log.Info().Strs("voters", names).Msg("cluster formed")
}

// ---- status and operator commands

// Status is this node's view of the Raft metadata store.
type Status struct {
	State        string // Leader, Follower, Candidate, Shutdown
	Leader       string // the leader's node name ("" without one)
	Voters       []string
	NonVoters    []string
	AppliedIndex uint64
	CommitIndex  uint64
	LastIndex    uint64
	LastContact  string // time since the leader was last heard from (followers)
}

// Status reports the Raft state as this node sees it.
func (n *Node) Status() Status {
	st := Status{State: n.raft.State().String(), LastIndex: n.raft.LastIndex()}
	_, id := n.raft.LeaderWithID()
	st.Leader = string(id)
	st.AppliedIndex, _ = n.fsm.appliedIndex()
	stats := n.raft.Stats()
	st.CommitIndex, _ = strconv.ParseUint(stats["commit_index"], 10, 64)
	st.LastContact = stats["last_contact"]
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				st.Voters = append(st.Voters, string(s.ID))
			} else {
				st.NonVoters = append(st.NonVoters, string(s.ID))
			}
		}
	}
	sort.Strings(st.Voters)
	sort.Strings(st.NonVoters)
	return st
}

// IsLeader reports whether this node leads the Raft metadata store.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Forget removes a node from the cluster for good: from the Raft configuration (so it no
// longer counts towards the quorum) and from gossip. Only an operator does this: a node that
// is merely down stays a member.
func (n *Node) Forget(ctx context.Context, name string) error {
	if name == n.cfg.NodeName {
		return errors.New("cluster: a node cannot forget itself; run forget on another node")
	}
	for _, m := range n.ml.members() {
		if m.Name == name && m.Status == "alive" {
			return fmt.Errorf("cluster: node %q is running; stop it before forgetting it", name)
		}
	}
	deadline := time.Now().Add(n.cfg.ProposeTimeout)
	for {
		if n.raft.State() == raft.Leader {
			if err := n.raft.RemoveServer(raft.ServerID(name), 0, time.Until(deadline)).Error(); err != nil {
				return fmt.Errorf("cluster: %w", err)
			}
			break
		}
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			_, _, sent, err := n.forward(string(addr), opRemove, []byte(name), deadline)
			if err == nil {
				break
			}
			if sent {
				return err
			}
		}
		if time.Now().After(deadline) {
			return ErrNoQuorum
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := n.ml.serf.RemoveFailedNodePrune(name); err != nil {
		n.log.Warn().Err(err).Str("member", name).Msg("removing a forgotten node from gossip failed")
	}
	n.log.Info().Str("member", name).Msg("node forgotten")
	return nil
}

// SetAddrs updates the client and management addresses this node gossips (once its listeners
// are bound).
func (n *Node) SetAddrs(amqp, http string) {
	n.ml.setTag(tagAMQP, amqp)
	n.ml.setTag(tagHTTP, http)
}
