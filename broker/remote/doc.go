// Package remote makes a queue homed on another cluster node usable here: its Ref (the client
// side, a queue.Ref the vhost hands out for such queues) and the home side that serves other
// nodes' requests for the queues homed on this node. Both halves talk over the node bus
// (cluster.Bus, seen through the Bus interface), one ordered link per pair of nodes.
//
//	rn := remote.New(remote.Config{Node: "warren@a", Log: log})
//	cfg.Remote = rn                       // broker.Config: every vhost reaches remote queues through it
//	srv, _ := broker.New(cfg)
//	rn.SetVHosts(srv.VHost)               // the home side finds the local queues
//	rn.Attach(node.Bus())                 // once the cluster node runs
//
// Publishing: a publish is one bus frame to the home (the bus writes many per syscall), in
// call order, so a channel's messages keep their order per queue. With a completion
// (confirms, transactions) it answers PubPending and the home's answer, sent after its
// durable write, completes it; without one it answers PubQueued at once, after waiting for
// room in the peer's publish window (the home reports what it processed).
//
// Consuming: Subscribe opens a subscription at the home, where a proxy consumer attaches to
// the queue, so consumer priorities, exclusive and single active consumers work as on one
// node: the home queue decides. The proxy's credit is the consumer's prefetch, given back as
// the consumer settles; a consumer without a prefetch (or no-ack) gets a window of
// deliveries, given back as it takes them. Deliveries the local consumer refuses (a full
// connection buffer, a channel-wide prefetch) wait in the Ref until Kick.
//
// Failure: when the link with a home breaks, its consumers here are cancelled (basic.cancel,
// as RabbitMQ does for a classic queue whose node goes down), pending publishes are nacked,
// requests fail with RabbitMQ's 404 for a queue whose home node is down; the home detaches
// the lost node's consumers and requeues what they had not settled. The refs open their
// queues again at their next use.
package remote
