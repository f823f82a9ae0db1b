package cluster

import (
	"encoding/binary"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Placement is where a replicated queue lives: its log's leader, its replicas (the leader
// included) and the leader's epoch. It is metadata (Raft); the broker keeps it with the queue.
type Placement struct {
	VHost, Queue string
	Log          string // the queue log's name on every replica
	Leader       string
	Replicas     []string
	Epoch        uint64
	// LeaderData is the data folder id (Member.DataID) the leader had when it was made leader
	// ("" when not recorded: placements from before it was).
	LeaderData string
}

// PlacementStore is the metadata the controller reads and changes (the broker's, through
// its Raft-replicated store).
type PlacementStore interface {
	// Placements lists every replicated queue.
	Placements() []Placement
	// Failover commits a new leader and epoch for a queue (if its placement is still p).
	Failover(p Placement, leader string, epoch uint64) error
}

// Bus topics of the controller.
const (
	topicStatusReq  byte = 's'
	topicStatusResp byte = 'S'
)

// Controller runs on every node and acts on the one leading the Raft metadata store: when a
// queue's leader node is gone, it asks the queue's live replicas where their logs stand and
// makes the most up-to-date one (highest last epoch, then highest offset) leader at the next
// epoch, once a majority of the replicas answered (so the committed records are among them).
//
// A node is gone when gossip says it failed or left, or at once when its links broke and a
// connection to it is refused (a killed process: its sockets close, so there is nothing to wait
// for). A silent node (paused, cut off) is gone when gossip's failure detector says so.
type Controller struct {
	n   *Node
	rep *Replication
	ps  PlacementStore

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	dead    map[string]string // peers whose process was seen gone (refused connection): their start id
	reqs    map[uint64]chan statusResp
	nextReq atomic.Uint64
}

type statusResp struct {
	peer string
	logs map[string]logStatus
}

type logStatus struct {
	epoch, lastEpoch, end uint64
}

// NewController starts the node's controller.
func (n *Node) NewController(rep *Replication, ps PlacementStore) *Controller {
	c := &Controller{n: n, rep: rep, ps: ps, kick: make(chan struct{}, 1), stop: make(chan struct{}),
		dead: map[string]string{}, reqs: map[uint64]chan statusResp{}}
	n.bus.Handle(topicStatusReq, c.serveStatus)
	n.bus.Handle(topicStatusResp, c.takeStatus)
	n.bus.OnDown(c.peerDown)
	c.wg.Add(1)
	go c.loop()
	return c
}

// Close stops the controller.
func (c *Controller) Close() {
	close(c.stop)
	c.wg.Wait()
}

// Kick makes the controller look now (a member changed, a placement changed).
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Controller) loop() {
	defer c.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		case <-t.C:
		}
		if c.n.IsLeader() {
			c.reconcile()
		}
	}
}

// peerDown checks at once whether a peer whose link broke is still there.
func (c *Controller) peerDown(peer string) {
	go func() {
		addr, id := "", ""
		for _, m := range c.n.ml.members() {
			if m.Name == peer {
				addr, id = m.RPC, m.id
			}
		}
		if addr == "" {
			return
		}
		conn, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err == nil {
			conn.Close()
			return // it is there: only the link broke
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return // silent, not refused: the failure detector decides
		}
		c.mu.Lock()
		c.dead[peer] = id
		c.mu.Unlock()
		c.n.log.Info().Str("member", peer).Msg("node gone (its connections closed and it refuses new ones)")
		c.n.hurryElection(peer)
		c.Kick()
	}()
}

// lostData reports whether a queue's leader, alive, is running on another data folder than
// the one it was made leader with: it lost the log (its followers must not take its empty one).
func lostData(p Placement, leader Member) bool {
	return p.LeaderData != "" && leader.DataID != "" && leader.DataID != p.LeaderData
}

// alive reports whether a node is up: gossip says alive and it was not seen gone since.
func (c *Controller) alive(name string, members map[string]Member) bool {
	m, ok := members[name]
	if !ok || m.Status != "alive" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, dead := c.dead[name]; dead {
		if m.id != id {
			delete(c.dead, name) // it restarted (a new start id in its gossip tags)
			return true
		}
		return false
	}
	return true
}

func (c *Controller) reconcile() {
	members := map[string]Member{}
	for _, m := range c.n.ml.members() {
		members[m.Name] = m
	}
	var orphans []Placement
	why := map[string]string{} // by log name
	for _, p := range c.ps.Placements() {
		if !c.alive(p.Leader, members) {
			orphans = append(orphans, p)
			why[p.Log] = "leader gone"
		} else if lostData(p, members[p.Leader]) {
			// Back with another data folder (wiped or replaced disk): it holds none of the
			// log, and must not lead it.
			orphans = append(orphans, p)
			why[p.Log] = "leader lost its data"
		}
	}
	if len(orphans) == 0 {
		return
	}
	// Ask every live replica of those queues, one request per node.
	ask := map[string][]string{}
	for _, p := range orphans {
		for _, r := range p.Replicas {
			if c.alive(r, members) {
				ask[r] = append(ask[r], p.Log)
			}
		}
	}
	statuses := c.askAll(ask, 500*time.Millisecond)
	for _, p := range orphans {
		leader, ok := ChooseLeader(p, statuses)
		if !ok {
			continue // not enough replicas answered: the queue waits (no quorum)
		}
		start := time.Now()
		if err := c.ps.Failover(p, leader, p.Epoch+1); err != nil {
			c.n.log.Warn().Err(err).Str("queue", p.Queue).Msg("queue failover not committed")
			continue
		}
		c.n.log.Info().Str("vhost", p.VHost).Str("queue", p.Queue).Str("from", p.Leader).Str("to", leader).Str("why", why[p.Log]).
			Uint64("epoch", p.Epoch+1).Dur("took", time.Since(start)).Msg("queue leader moved")
	}
}

// ChooseLeader picks a queue's new leader from its replicas' statuses: only when a majority of
// the replicas answered (the committed records are then on one of them), the one with the
// highest last epoch, then the highest end offset, then the smallest name.
func ChooseLeader(p Placement, statuses map[string]map[string]logStatus) (string, bool) {
	type cand struct {
		name string
		st   logStatus
	}
	var cs []cand
	for _, r := range p.Replicas {
		if st, ok := statuses[r][p.Log]; ok && r != p.Leader {
			cs = append(cs, cand{r, st})
		}
	}
	if len(cs) < len(p.Replicas)/2+1 {
		return "", false
	}
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i].st, cs[j].st
		if a.lastEpoch != b.lastEpoch {
			return a.lastEpoch > b.lastEpoch
		}
		if a.end != b.end {
			return a.end > b.end
		}
		return cs[i].name < cs[j].name
	})
	return cs[0].name, true
}

// askAll sends each node the names of the logs to report and gathers the answers until the
// timeout (nodes that do not answer are left out).
func (c *Controller) askAll(ask map[string][]string, timeout time.Duration) map[string]map[string]logStatus {
	id := c.nextReq.Add(1)
	ch := make(chan statusResp, len(ask))
	c.mu.Lock()
	c.reqs[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.reqs, id)
		c.mu.Unlock()
	}()
	sent := 0
	for node, logs := range ask {
		b := binary.BigEndian.AppendUint64(nil, id)
		for _, l := range logs {
			b = append(b, byte(len(l)))
			b = append(b, l...)
		}
		if c.n.bus.Send(node, topicStatusReq, b) == nil {
			sent++
		}
	}
	out := map[string]map[string]logStatus{}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for len(out) < sent {
		select {
		case r := <-ch:
			out[r.peer] = r.logs
		case <-t.C:
			return out
		}
	}
	return out
}

func (c *Controller) serveStatus(peer string, p []byte) {
	if len(p) < 8 {
		return
	}
	resp := append([]byte(nil), p[:8]...)
	p = p[8:]
	for len(p) > 0 {
		n := int(p[0])
		if len(p) < 1+n {
			return
		}
		name := string(p[1 : 1+n])
		p = p[1+n:]
		epoch, last, end, ok := c.rep.Status(name)
		if !ok {
			continue
		}
		resp = append(resp, byte(len(name)))
		resp = append(resp, name...)
		resp = binary.BigEndian.AppendUint64(resp, epoch)
		resp = binary.BigEndian.AppendUint64(resp, last)
		resp = binary.BigEndian.AppendUint64(resp, end)
	}
	c.n.bus.Send(peer, topicStatusResp, resp)
}

func (c *Controller) takeStatus(peer string, p []byte) {
	if len(p) < 8 {
		return
	}
	id := binary.BigEndian.Uint64(p)
	p = p[8:]
	logs := map[string]logStatus{}
	for len(p) > 0 {
		n := int(p[0])
		if len(p) < 1+n+24 {
			return
		}
		name := string(p[1 : 1+n])
		p = p[1+n:]
		logs[name] = logStatus{binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:]), binary.BigEndian.Uint64(p[16:])}
		p = p[24:]
	}
	c.mu.Lock()
	ch := c.reqs[id]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- statusResp{peer, logs}:
		default:
		}
	}
}
