// Package cluster joins Warren nodes into one cluster: serf membership (who is up, their
// addresses as tags), an authenticated node-to-node transport (one listener, streams
// multiplexed by kind), and a Raft-replicated metadata store whose log every node applies
// through the same state machine it uses on one node.
//
// The broker never imports this package: cmd/warren wires a Node to the broker through the
// broker's small interfaces (the metadata store), and a single node without --cluster-listen
// never starts one.
//
//	n, err := cluster.Start(cluster.Config{
//		NodeName:     "warren@a",
//		GossipListen: "10.0.0.1:25672",
//		RPCListen:    "10.0.0.1:25673",
//		Join:         []string{"10.0.0.2:25672"},
//		Expect:       3,
//		Key:          key,
//		DataDir:      "data/cluster",
//		StateMachine: fsm,
//	})
//	res, err := n.Propose(ctx, record) // committed on a majority and applied here
package cluster
