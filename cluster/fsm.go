package cluster

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// fsm adapts a StateMachine to raft.FSM and tracks the applied index, so that a node that
// forwarded a change can wait until it has applied it too (read your own writes).
type fsm struct {
	sm StateMachine

	mu      sync.Mutex
	applied uint64
	advance chan struct{} // closed and replaced on every advance
}

func newFSM(sm StateMachine) *fsm { return &fsm{sm: sm, advance: make(chan struct{})} }

func (f *fsm) Apply(l *raft.Log) interface{} {
	var res []byte
	if l.Type == raft.LogCommand {
		res = f.sm.Apply(l.Index, l.Data)
	}
	f.setApplied(l.Index)
	return res
}

func (f *fsm) setApplied(i uint64) {
	f.mu.Lock()
	if i > f.applied {
		f.applied = i
		close(f.advance)
		f.advance = make(chan struct{})
	}
	f.mu.Unlock()
}

// appliedIndex returns the last applied index and a channel closed when it next moves.
func (f *fsm) appliedIndex() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.advance
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.sm.Snapshot()
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	return f.sm.Restore(b)
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
