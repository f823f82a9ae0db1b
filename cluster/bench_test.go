package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkPropose measures one metadata change committed by a 3-node cluster on loopback
// and applied on the proposing node, from the leader and from a follower (serial: one change
// waits for the previous one's answer, as a client's declares on one channel do).
func BenchmarkPropose(b *testing.B) {
	ns := make([]*testNode, 3)
	for i := range ns {
		var join []string
		if i > 0 {
			join = []string{ns[0].GossipAddr()}
		}
		ns[i] = startBenchNode(b, fmt.Sprintf("b%d", i), join...)
	}
	defer func() {
		for _, n := range ns {
			n.Close()
		}
	}()
	end := time.Now().Add(15 * time.Second)
	for leaderOf(ns...) == nil && time.Now().Before(end) {
		time.Sleep(20 * time.Millisecond)
	}
	l := leaderOf(ns...)
	var f *testNode
	for _, n := range ns {
		if n != l {
			f = n
		}
	}
	for _, c := range []struct {
		name string
		n    *testNode
	}{{"from=leader", l}, {"from=follower", f}} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				if _, err := c.n.Propose(context.Background(), []byte(fmt.Sprintf("k%d=v", i))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
