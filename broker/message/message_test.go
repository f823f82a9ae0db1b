package message

import (
	"bytes"
	"testing"

	"github.com/warrenmq/warren/amqp"
)

func TestEncoding_RoundTrip(t *testing.T) {
	props := (&amqp.Properties{DeliveryMode: 2, ContentType: "text/plain", Headers: amqp.Table{"k": "v"}}).AppendTo(nil)
	m, err := New("ex", "key.1", props, []byte("hello body"))
	if err != nil {
		t.Fatal(err)
	}
	rec := AppendEncoded(nil, m)
	if len(rec) > EncodedSize(m) {
		t.Fatalf("EncodedSize %d < %d", EncodedSize(m), len(rec))
	}
	got, err := Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	if got.Exchange != "ex" || got.RoutingKey != "key.1" || !bytes.Equal(got.RawProps, props) || string(got.Body) != "hello body" || !got.Persistent() {
		t.Fatalf("decoded %+v", got)
	}
	if got.Headers()["k"] != "v" {
		t.Fatal("headers lost")
	}
	for cut := 0; cut < len(rec)-len("hello body"); cut++ {
		if _, err := Decode(rec[:cut]); err == nil {
			t.Fatalf("prefix %d decoded", cut)
		}
	}
}
