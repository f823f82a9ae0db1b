package session

import "testing"

func TestReplyKey_NamesItsNodeInACluster(t *testing.T) {
	r := &ReplyRegistry{Node: "warren@host.example"}
	k := r.newKey()
	if !isReplyTo("", k) {
		t.Fatalf("%q is no reply address", k)
	}
	if got := nodeOf(k); got != r.Node {
		t.Fatalf("node of %q: %q, want %q", k, got, r.Node)
	}
	single := (&ReplyRegistry{}).newKey()
	if got := nodeOf(single); got != "" {
		t.Fatalf("a single node's address %q names node %q", single, got)
	}
	if got := nodeOf(ReplyToQueue + ".x.!!"); got != "" {
		t.Fatalf("a node part that is not base64 named %q", got)
	}
}
