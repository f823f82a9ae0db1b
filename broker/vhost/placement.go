package vhost

import (
	"math/rand/v2"

	"github.com/warrenmq/warren/broker/queue"
)

// placeQueue chooses the node a new classic queue lives on, as RabbitMQ 3.10's
// x-queue-master-locator does (the argument, else the policy key queue-master-locator, else
// the node's default, DefaultLocator, else client-local): "client-local" is the node the declare came through (returned as "": the
// record's proposer), "min-masters" the live node with the fewest queues of this vhost,
// "random" a live node at random. Exclusive queues always live on their connection's node, and
// quorum queues and streams are placed with their replicas, not here. On a single node, "".
func (v *VHost) placeQueue(d QueueDecl) string {
	if v.Remote == nil || d.Exclusive {
		return ""
	}
	if t, _ := d.Args["x-queue-type"].(string); t != "" && t != "classic" {
		return ""
	}
	strategy, ok := queue.MasterLocator(d.Args["x-queue-master-locator"])
	if !ok {
		v.mu.RLock()
		if p := v.policyForLocked("queues", d.Name); p != nil {
			strategy, _ = queue.MasterLocator(p.Definition["queue-master-locator"])
		}
		v.mu.RUnlock()
	}
	if strategy == "" {
		strategy = v.DefaultLocator
	}
	nodes := v.Remote.Nodes()
	if len(nodes) == 0 {
		return ""
	}
	switch strategy {
	case "random":
		return nodes[rand.IntN(len(nodes))]
	case "min-masters":
		count := make(map[string]int, len(nodes))
		for _, n := range nodes {
			count[n] = 0
		}
		self := v.Remote.Node()
		v.mu.RLock()
		for _, h := range v.home {
			if _, ok := count[h]; ok {
				count[h]++
			}
		}
		for name := range v.queues { // queues without a home record are the declaring nodes'
			if v.home[name] == "" {
				count[self]++
			}
		}
		v.mu.RUnlock()
		best := ""
		for _, n := range nodes { // sorted: ties go to the first name
			if best == "" || count[n] < count[best] {
				best = n
			}
		}
		return best
	}
	return ""
}
