package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/queue"
	"github.com/warrenmq/warren/broker/remote"
	"github.com/warrenmq/warren/cluster"
	"github.com/warrenmq/warren/wal"
)

// clusterFlags are the cluster settings; clustering is off unless --cluster-listen is given.
type clusterFlags struct {
	nodeName     string
	listen       string
	advertise    string
	rpcListen    string
	rpcAdvertise string
	join         string
	expect       int
	keyFile      string
}

func registerClusterFlags(fs *flag.FlagSet) *clusterFlags {
	f := &clusterFlags{}
	fs.StringVar(&f.nodeName, "node-name", "", "this node's name, unique in its cluster (default warren@HOST)")
	fs.StringVar(&f.listen, "cluster-listen", "", "gossip address (UDP and TCP) of this node: clustering is on when set; the node-to-node port is this port + 1 unless --cluster-rpc-listen is given")
	fs.StringVar(&f.advertise, "cluster-advertise", "", "gossip address the other nodes reach this node at (default: --cluster-listen)")
	fs.StringVar(&f.rpcListen, "cluster-rpc-listen", "", "node-to-node listen address (Raft, forwarded changes, queue data; default: gossip port + 1)")
	fs.StringVar(&f.rpcAdvertise, "cluster-rpc-advertise", "", "node-to-node address the other nodes reach this node at (default: --cluster-rpc-listen, with --cluster-advertise's host)")
	fs.StringVar(&f.join, "cluster-join", "", "comma-separated gossip addresses of other nodes, tried until one answers (nodes may start in any order)")
	fs.IntVar(&f.expect, "cluster-expect", 0, "voters to wait for before the first election, as Consul's bootstrap_expect (default: 1 without --cluster-join, else join a running cluster)")
	fs.StringVar(&f.keyFile, "cluster-key-file", "", "cluster key (32 bytes, raw or 64 hex digits): encrypts gossip and authenticates every node-to-node connection")
	return f
}

func (f *clusterFlags) enabled() bool { return f.listen != "" }

// name is the node's name: --node-name or warren@HOST.
func (f *clusterFlags) name() string {
	if f.nodeName != "" {
		return f.nodeName
	}
	host, _ := os.Hostname()
	return "warren@" + host
}

func (f *clusterFlags) validate() error {
	if !f.enabled() {
		for _, s := range []string{f.advertise, f.rpcListen, f.rpcAdvertise, f.join, f.keyFile} {
			if s != "" {
				return errors.New("cluster-advertise, cluster-rpc-listen, cluster-rpc-advertise, cluster-join and cluster-key-file need --cluster-listen")
			}
		}
		if f.expect != 0 {
			return errors.New("cluster-expect needs --cluster-listen")
		}
		return nil
	}
	if f.expect < 0 {
		return fmt.Errorf("cluster-expect %d: negative", f.expect)
	}
	return nil
}

// clusterRun is a started cluster membership, once the broker recovers.
type clusterRun struct {
	node   *cluster.Node
	remote *remote.Node // reaches queues homed on other nodes, serves those homed here
	host   *replicaHost
	ctl    *cluster.Controller
}

// replicator adapts a cluster node to the metadata store's Replicator, mapping its errors.
type replicator struct{ n *cluster.Node }

// CatchUp waits until the node applied what it knows to be committed (meta.ReplicatedStore.CatchUp).
func (r replicator) CatchUp() bool { return r.n.CatchUp(100 * time.Millisecond) }

func (r replicator) Propose(ctx context.Context, entry []byte) ([]byte, error) {
	res, err := r.n.Propose(ctx, entry)
	switch {
	case errors.Is(err, cluster.ErrNoQuorum):
		return nil, meta.ErrNoQuorum
	case errors.Is(err, cluster.ErrUncertain):
		return nil, meta.ErrUncertain
	}
	return res, err
}

// setup makes the broker keep its metadata in the cluster's Raft log: the node starts when the
// broker recovers (its state machine is the broker's metadata store).
func (f *clusterFlags) setup(bcfg *broker.Config, store *walStorage, httpListen string, log zerolog.Logger) (*clusterRun, error) {
	var key []byte
	if f.keyFile != "" {
		k, err := cluster.LoadKey(f.keyFile)
		if err != nil {
			return nil, err
		}
		key = k
	} else {
		log.Warn().Msg("cluster without --cluster-key-file: gossip is not encrypted and any process that reaches the node-to-node port can join")
	}
	dir := filepath.Join(bcfg.DataDir, "cluster")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		n := 0
		store.MetaLog().Replay(func(uint64, []byte) error { n++; return nil })
		if n > 0 {
			return nil, fmt.Errorf("cluster: %s holds a single node's metadata (%d records); a node joins a cluster with an empty data folder (export the definitions with warrenctl or GET /api/definitions and import them into the cluster)", bcfg.DataDir, n)
		}
	}
	name := f.name()
	run := &clusterRun{host: &replicaHost{self: name, store: store}}
	run.remote = remote.New(remote.Config{Node: name, Log: log, Members: run.liveNodes})
	bcfg.Remote = run.remote
	bcfg.Replicas = run.host
	ccfg := cluster.Config{
		NodeName: name, GossipListen: f.listen, GossipAdvertise: f.advertise,
		RPCListen: f.rpcListen, RPCAdvertise: f.rpcAdvertise, Join: splitList(f.join),
		Expect: f.expect, Key: key, DataDir: dir,
		AMQPAddr: bcfg.AMQPListen, HTTPAddr: httpListen, Version: broker.Version,
		Logger: log,
		Setup: func(n *cluster.Node) error {
			rep, err := n.NewReplication(store.m)
			if err != nil {
				return err
			}
			run.host.node, run.host.rep = n, rep
			store.onAppend.Store(rep)
			return nil
		},
	}
	bcfg.MetaStore = func(app meta.Applier) meta.Store {
		return meta.NewReplicatedStore(app, name, log.With().Str("component", "meta").Logger(), func(rs *meta.ReplicatedStore) (meta.Replicator, error) {
			ccfg.StateMachine = rs
			n, err := cluster.Start(ccfg)
			if err != nil {
				return nil, err
			}
			run.node = n
			run.remote.Attach(n.Bus())
			return replicator{n}, nil
		})
	}
	return run, nil
}

// liveNodes returns the names of the cluster's live members (this node alone before it runs).
func (r *clusterRun) liveNodes() []string {
	n := r.node
	if n == nil {
		return nil
	}
	var out []string
	for _, m := range n.Members() {
		if m.Status == "alive" {
			out = append(out, m.Name)
		}
	}
	return out
}

// serve lets the node serve the queues homed here to the other nodes, once the broker has
// recovered them (until then their requests are answered as for a home that is down).
func (r *clusterRun) serve(srv *broker.Server) {
	r.remote.SetVHosts(srv.VHost)
}

// started runs once the broker is up: the controller moves the leaders of replicated queues
// whose node is gone (it acts on the Raft leader).
func (r *clusterRun) started(srv *broker.Server) {
	r.host.srv.Store(srv)
	r.ctl = r.node.NewController(r.host.rep, placements{srv})
}

func (r *clusterRun) close() {
	if r == nil {
		return
	}
	if r.ctl != nil {
		r.ctl.Close()
	}
	if r.host.rep != nil {
		r.host.rep.Close()
	}
	if r.node != nil {
		r.node.Close()
	}
	r.remote.Close()
}

// clusterNode is the started node (nil without a cluster).
func (r *clusterRun) clusterNode() *cluster.Node {
	if r == nil {
		return nil
	}
	return r.node
}

// fatal delivers an error that must stop the node (nil channel without a cluster).
func (r *clusterRun) fatal() <-chan error {
	if r == nil || r.node == nil {
		return nil
	}
	return r.node.Fatal()
}

var (
	_ cluster.StateMachine = (*meta.ReplicatedStore)(nil)
	_ remote.Bus           = (*cluster.Bus)(nil)
)

// replicaHost is vhost.ReplicaHost over the cluster's queue-log replication: the queue's log
// name is the one the storage uses (encryption bound to its vhost, kept by the sweep).
type replicaHost struct {
	self  string
	store *walStorage
	srv   atomic.Pointer[broker.Server] // for Place: where replicas are already
	node  *cluster.Node
	rep   *cluster.Replication
}

func (h *replicaHost) Self() string { return h.self }

// DataID is a node's data folder id, as it gossips it ("" for a node not seen).
func (h *replicaHost) DataID(node string) string {
	if node == h.self {
		return h.node.DataID()
	}
	for _, m := range h.node.Members() {
		if m.Name == node {
			return m.DataID
		}
	}
	return ""
}

func (h *replicaHost) logName(vh, q string) string {
	name := queueLogName(vh, q)
	h.store.mu.Lock()
	h.store.tried[name] = true
	h.store.mu.Unlock()
	h.store.enc.bind(name, vh)
	return name
}

// Place picks this node and then the live nodes holding the fewest replicas.
func (h *replicaHost) Place(n int) []string {
	load := map[string]int{}
	var live []string
	for _, m := range h.node.Members() {
		if m.Status == "alive" && m.RPC != "" {
			live = append(live, m.Name)
			load[m.Name] = 0
		}
	}
	if srv := h.srv.Load(); srv != nil {
		for _, ps := range srv.Placements() {
			for _, p := range ps {
				for _, r := range p.Replicas {
					if _, ok := load[r]; ok {
						load[r]++
					}
				}
			}
		}
	}
	sort.Slice(live, func(i, j int) bool {
		if load[live[i]] != load[live[j]] {
			return load[live[i]] < load[live[j]]
		}
		return live[i] < live[j]
	})
	out := []string{h.self}
	for _, m := range live {
		if len(out) >= n {
			break
		}
		if m != h.self {
			out = append(out, m)
		}
	}
	return out
}

func (h *replicaHost) Lead(vh, q string, epoch uint64, followers []string, async bool, replay func(off uint64, payload []byte, delivered bool) error) (queue.Log, error) {
	rl, wl, err := h.rep.Lead(h.logName(vh, q), epoch, followers, async)
	if err != nil {
		return nil, h.store.enc.explain(err)
	}
	if replay != nil {
		if err := wl.Replay(func(e wal.Entry) error { return replay(e.Offset, e.Payload, e.Delivered) }); err != nil {
			return nil, h.store.enc.explain(err)
		}
	}
	return rl, nil
}

func (h *replicaHost) Follow(vh, q string, epoch uint64, leader string) error {
	return h.rep.Follow(h.logName(vh, q), epoch, leader)
}

func (h *replicaHost) Stop(vh, q string, remove bool) { h.rep.Stop(queueLogName(vh, q), remove) }

func (h *replicaHost) PrepareTransfer(vh, q, target string) (func(), error) {
	return h.rep.PrepareTransfer(queueLogName(vh, q), target, 5*time.Second)
}

func (h *replicaHost) InSync(vh, q string) []string { return h.rep.InSync(queueLogName(vh, q)) }

func (h *replicaHost) SetMembers(vh, q string, followers []string) error {
	return h.rep.Reconfigure(queueLogName(vh, q), followers)
}

// placements is cluster.PlacementStore over the broker's replicated queues.
type placements struct {
	srv *broker.Server
}

func (p placements) Placements() []cluster.Placement {
	var out []cluster.Placement
	for vh, ps := range p.srv.Placements() {
		for _, x := range ps {
			out = append(out, cluster.Placement{VHost: vh, Queue: x.Queue, Log: queueLogName(vh, x.Queue), Leader: x.Leader, Replicas: x.Replicas, Epoch: x.Epoch, LeaderData: x.LeaderData})
		}
	}
	return out
}

func (p placements) Failover(pl cluster.Placement, leader string, epoch uint64) error {
	v := p.srv.VHost(pl.VHost)
	if v == nil {
		return nil
	}
	return v.MoveLeader(pl.Queue, pl.Epoch, leader)
}
