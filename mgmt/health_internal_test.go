package mgmt

import (
	"reflect"
	"testing"

	"github.com/warrenmq/warren/broker/vhost"
)

// A node is quorum-critical for a replicated queue with a replica on it when the queue's other
// replicas online are fewer than a majority, and for the metadata store when it is a voter and
// the other voters online are fewer than a majority.
func TestQuorumCritical(t *testing.T) {
	ps := map[string][]vhost.Placement{
		"/": {
			{Queue: "q3", Leader: "a", Replicas: []string{"a", "b", "c"}},
			{Queue: "q1", Leader: "b", Replicas: []string{"b"}},
			{Queue: "elsewhere", Leader: "b", Replicas: []string{"b", "c", "d"}},
		},
		"v": {{Queue: "q5", Leader: "c", Replicas: []string{"a", "b", "c", "d", "e"}}},
	}
	voters := []string{"a", "b", "c"}
	qq := func(vh, name, readable string) map[string]any {
		return map[string]any{"readable_name": readable, "name": name, "virtual_host": vh, "type": "quorum"}
	}
	meta := map[string]any{"readable_name": "metadata store (Raft)", "name": "metadata_store", "virtual_host": "-", "type": "process"}
	for _, c := range []struct {
		name   string
		online []string
		want   []map[string]any
	}{
		{"all online", []string{"a", "b", "c", "d", "e"}, nil},
		{"a replica of q5 down", []string{"a", "b", "c", "e"}, nil},
		{"a replica of q3 and a voter down", []string{"a", "b", "d", "e"}, []map[string]any{qq("/", "q3", "queue 'q3' in vhost '/'"), meta}},
		{"two down", []string{"a", "b", "e"}, []map[string]any{qq("/", "q3", "queue 'q3' in vhost '/'"), qq("v", "q5", "queue 'q5' in vhost 'v'"), meta}},
		{"alone", []string{"a"}, []map[string]any{qq("/", "q3", "queue 'q3' in vhost '/'"), qq("v", "q5", "queue 'q5' in vhost 'v'"), meta}},
	} {
		online := map[string]bool{}
		for _, n := range c.online {
			online[n] = true
		}
		got := quorumCritical("a", online, voters, ps)
		if len(got) == 0 && len(c.want) == 0 {
			continue
		}
		var want []obj
		for _, w := range c.want {
			want = append(want, w)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", c.name, got, want)
		}
	}
	// A node that is no voter and holds no replica is never critical.
	if got := quorumCritical("z", map[string]bool{"z": true}, voters, ps); len(got) != 0 {
		t.Errorf("a node without replicas: %v", got)
	}
}
