package mgmt

import (
	"sync"
	"time"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/broker/session"
)

// The sampler turns monotonically increasing counters (and gauges such as queue lengths) into
// per-second rates over the last sample interval. One goroutine calls sample; request
// handlers read rates. Objects are keyed by identity (*queue.Queue, *session.Channel,
// *session.Conn, nodeKey) and forgotten when they disappear.
type sampler struct {
	mu     sync.Mutex
	at     time.Time
	gen    uint64
	series map[any]*series
}

type series struct {
	vals  []float64
	rates []float64
	gen   uint64
}

type nodeKey struct{}

// Vector layouts per object kind.
const (
	// node: session.NumStats counters, then these gauges
	nodeMessages = int(session.NumStats) + iota
	nodeReady
	nodeUnacked
	nodeLen
)

const (
	qPublish = iota
	qDeliverGet
	qDeliver
	qGet
	qAck
	qRedeliver
	qMessages
	qReady
	qUnacked
	qLen
)

const (
	xPublishIn = iota
	xPublishOut
	xLen
)

const (
	connRecv = iota
	connSend
	connLen
)

func newSampler() *sampler { return &sampler{series: make(map[any]*series)} }

// sample reads every counter once and updates the rates.
func (sm *sampler) sample(b *broker.Server, now time.Time) {
	type obs struct {
		key  any
		vals []float64
	}
	var all []obs
	node := make([]float64, nodeLen)
	for i, v := range b.Stats().Snapshot() {
		node[i] = float64(v)
	}
	for _, vh := range b.VHosts() {
		for _, x := range vh.Exchanges() {
			all = append(all, obs{x, []float64{float64(x.PublishIn.Load()), float64(x.PublishOut.Load())}})
		}
		for _, q := range vh.Queues() {
			if vh.Ref(q) != q.Ref() {
				continue // homed on another node: sampled there
			}
			v := queueVector(q)
			node[nodeMessages] += v[qMessages]
			node[nodeReady] += v[qReady]
			node[nodeUnacked] += v[qUnacked]
			all = append(all, obs{q, v})
		}
	}
	all = append(all, obs{nodeKey{}, node})
	for _, c := range b.Connections() {
		all = append(all, obs{c, []float64{float64(c.RecvBytes.Load()), float64(c.SentBytes.Load())}})
		for _, ch := range c.Channels() {
			all = append(all, obs{ch, statVector(ch.Stats())})
		}
	}

	sm.mu.Lock()
	defer sm.mu.Unlock()
	dt := now.Sub(sm.at).Seconds()
	sm.at = now
	sm.gen++
	for _, o := range all {
		s := sm.series[o.key]
		if s == nil {
			s = &series{rates: make([]float64, len(o.vals))}
			sm.series[o.key] = s
		} else if dt > 0 && len(s.vals) == len(o.vals) {
			for i := range o.vals {
				s.rates[i] = (o.vals[i] - s.vals[i]) / dt
			}
		}
		s.vals = o.vals
		s.gen = sm.gen
	}
	for k, s := range sm.series {
		if s.gen != sm.gen {
			delete(sm.series, k)
		}
	}
}

// rates returns the per-second rates of key's vector, or zeros of length n when unknown.
func (sm *sampler) rates(key any, n int) []float64 {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	out := make([]float64, n)
	if s := sm.series[key]; s != nil {
		copy(out, s.rates)
	}
	return out
}

func statVector(st *session.Stats) []float64 {
	snap := st.Snapshot()
	v := make([]float64, len(snap))
	for i, x := range snap {
		v[i] = float64(x)
	}
	return v
}
