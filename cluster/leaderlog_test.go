package cluster

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A node logs, at info, the metadata leader it sees elected.
func TestNode_LogsRaftLeaderChanges(t *testing.T) {
	var logs lockedBuf
	n, err := Start(Config{NodeName: "solo", GossipListen: "127.0.0.1:0", RPCListen: "127.0.0.1:0", Expect: 1,
		DataDir: t.TempDir(), StateMachine: newKV(), FastFailureDetection: true, HeartbeatTimeout: 500 * time.Millisecond,
		Logger: zerolog.New(&logs).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	waitFor(t, 20*time.Second, "a leader change logged", func() bool {
		return strings.Contains(logs.String(), `"leader":"solo","self":true`) && strings.Contains(logs.String(), `"message":"raft leader changed"`)
	})
}
