package vhost

import (
	"time"

	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
)

// deadLetter republishes messages dead-lettered by src to its dead-letter exchange, with the
// x-death header, skipping queues that would close an automatic cycle (as RabbitMQ). Called
// without locks. Dead-lettering is at most once, as in RabbitMQ: no publisher confirms.
func (v *VHost) deadLetter(src *queue.Queue, dead []queue.DeadLetter) {
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
		if err := v.Route(&r, cfg.DLX, m.RoutingKey, m); err != nil {
			continue // a missing dead-letter exchange drops the message, as RabbitMQ
		}
		for _, q := range r.Queues {
			if message.DeathCycle(m, q.Name) {
				continue
			}
			q.Publish(m, nil)
		}
	}
}
