package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/remote"
	"github.com/warrenmq/warren/cluster"
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
	run := &clusterRun{}
	run.remote = remote.New(remote.Config{Node: name, Log: log, Members: run.liveNodes})
	bcfg.Remote = run.remote
	ccfg := cluster.Config{
		NodeName: name, GossipListen: f.listen, GossipAdvertise: f.advertise,
		RPCListen: f.rpcListen, RPCAdvertise: f.rpcAdvertise, Join: splitList(f.join),
		Expect: f.expect, Key: key, DataDir: dir,
		AMQPAddr: bcfg.AMQPListen, HTTPAddr: httpListen, Version: broker.Version,
		Logger: log,
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
	if r != nil {
		r.remote.SetVHosts(srv.VHost)
	}
}

func (r *clusterRun) close() {
	if r != nil && r.node != nil {
		r.node.Close()
	}
	if r != nil {
		r.remote.Close()
	}
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
