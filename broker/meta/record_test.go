package meta

import (
	"testing"

	"github.com/warrenmq/warren/amqp"
)

// A declare's arguments may nest as deep as any field table a client sends (1,000 levels):
// the record that holds them must decode too (a cluster's every node decodes it; a single
// node at its restart).
func TestRecord_HoldsArgumentsNestedAsDeepAsAClientMay(t *testing.T) {
	deep := amqp.Table{"leaf": int32(1)}
	for range 1000 {
		deep = amqp.Table{"n": deep}
	}
	if _, _, err := amqp.ReadTable(amqp.AppendTable(nil, deep)); err != nil {
		t.Fatalf("the arguments themselves: %v", err)
	}
	r := Record{Kind: KindQueue, VHost: "/", Name: "q", Fields: amqp.Table{"args": deep}}
	got, err := Decode(r.Encode())
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if _, ok := got.Fields["args"].(amqp.Table); !ok {
		t.Fatalf("arguments lost: %v", got.Fields)
	}
}
