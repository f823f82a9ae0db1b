package cluster

import (
	"time"

	"github.com/hashicorp/raft"
)

// hurryElection: the Raft leader's process is gone (its links broke and it refuses
// connections: a kill -9 or a crash, never a pause or a partition, which the ordinary timeout
// handles). Waiting for Raft's heartbeat timeout (1-2 s by default) would only delay every
// failover that needs a new controller, so this follower shortens its timeout to the leader
// lease (the least Raft allows) until a new leader is known, then restores it. A follower
// that still hears a leader is unaffected: Raft starts an election only once it heard nothing
// for the timeout.
func (n *Node) hurryElection(peer string) {
	_, id := n.raft.LeaderWithID()
	if string(id) != peer || n.raft.State() != raft.Follower {
		return
	}
	n.electMu.Lock()
	defer n.electMu.Unlock()
	if n.hurrying {
		return
	}
	normal := n.raft.ReloadableConfig()
	fast := normal
	fast.HeartbeatTimeout = n.lease
	fast.ElectionTimeout = n.lease
	if fast.HeartbeatTimeout >= normal.HeartbeatTimeout {
		return
	}
	if err := n.raft.ReloadConfig(fast); err != nil {
		n.log.Warn().Err(err).Msg("cannot shorten the raft election timeout")
		return
	}
	n.hurrying = true
	n.log.Info().Str("leader", peer).Dur("timeout", fast.HeartbeatTimeout).Msg("raft leader's process is gone: election timeout shortened until a new leader is known")
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		end := time.Now().Add(10 * time.Second)
		for time.Now().Before(end) {
			if _, id := n.raft.LeaderWithID(); id != "" && string(id) != peer {
				break
			}
			select {
			case <-n.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		n.electMu.Lock()
		defer n.electMu.Unlock()
		cur := n.raft.ReloadableConfig()
		cur.HeartbeatTimeout, cur.ElectionTimeout = normal.HeartbeatTimeout, normal.ElectionTimeout
		if err := n.raft.ReloadConfig(cur); err != nil {
			n.log.Warn().Err(err).Msg("cannot restore the raft election timeout")
		}
		n.hurrying = false
	}()
}
