package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// nudger makes the leader tell every follower its commit index at once. A follower learns
// that an entry committed only from the leader's next AppendEntries, which hashicorp/raft
// sends when it has a new entry or, failing that, after CommitTimeout (randomly up to twice
// it). A change forwarded by a follower is answered only once that follower applied it, so
// without a nudge it waits for that timer. A barrier is an entry: appending one sends an
// AppendEntries to every follower right away, carrying the new commit index. At most one
// barrier is in flight; if changes commit while it is, one more follows it.
type nudger struct {
	mu      sync.Mutex
	running bool // a goroutine is issuing barriers
	again   bool // a change committed after the barrier in flight was appended
	wg      sync.WaitGroup
}

// kick asks for a barrier. It does not wait.
func (g *nudger) kick(r *raft.Raft, timeout time.Duration) {
	g.mu.Lock()
	if g.running {
		g.again = true
		g.mu.Unlock()
		return
	}
	g.running = true
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			// Errors (not the leader any more, shut down) need nothing: a new leader
			// sends its own entries, and a shut-down node has no followers to tell.
			_ = r.Barrier(timeout).Error()
			g.mu.Lock()
			if !g.again {
				g.running = false
				g.mu.Unlock()
				return
			}
			g.again = false
			g.mu.Unlock()
		}
	}()
}

// wait waits for the barrier goroutine; Raft must be shut down (which fails pending barriers).
func (g *nudger) wait() { g.wg.Wait() }
