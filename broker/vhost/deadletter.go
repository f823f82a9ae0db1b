package vhost

import (
	"time"

	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
)

// deadLetter republishes messages dead-lettered by src to its dead-letter exchange, with the
// x-death header, skipping queues that would close an automatic cycle (as RabbitMQ), through
// the vhost's publish path. Called without locks. Dead-lettering is at most once, as in RabbitMQ: no publisher confirms.
//
// While the vhost is being restored (BeginRestore until FinishRestore) dead letters wait:
// the exchanges, bindings and policies they go through may not be back yet (a message whose
// TTL ran out while the node was down expires as soon as its queue is restored).
func (v *VHost) deadLetter(src *queue.Queue, dead []queue.DeadLetter) {
	if v.restoring.Load() {
		v.parkMu.Lock()
		if v.restoring.Load() {
			v.parked = append(v.parked, parkedDead{src, dead})
			v.parkMu.Unlock()
			return
		}
		v.parkMu.Unlock()
	}
	cfg := src.Config()
	if !cfg.HasDLX {
		return
	}
	var key *string
	if cfg.HasDLRK {
		k := cfg.DLRK
		key = &k
	}
	var r Router
	now := time.Now()
	for _, d := range dead {
		m, err := message.DeadLettered(d.Msg, d.Reason, src.Name, cfg.DLX, key, now)
		if err != nil {
			continue
		}
		// Published to the dead-letter exchange (m.Exchange). A missing one drops the
		// message, as RabbitMQ does; so does a queue that would close a cycle.
		v.publish(&r, m, nil, true)
	}
}

// parkedDead is a batch of dead letters held while the vhost is restored.
type parkedDead struct {
	src  *queue.Queue
	dead []queue.DeadLetter
}

// BeginRestore holds dead letters until FinishRestore: the node is replaying its metadata.
func (v *VHost) BeginRestore() { v.restoring.Store(true) }

// releaseParked ends the restore and dead-letters what waited.
func (v *VHost) releaseParked() {
	v.parkMu.Lock()
	v.restoring.Store(false)
	parked := v.parked
	v.parked = nil
	v.parkMu.Unlock()
	for _, p := range parked {
		v.deadLetter(p.src, p.dead)
	}
}
