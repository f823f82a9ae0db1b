package message

import (
	"bytes"
	"errors"
	"strings"
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

func TestExpirationMillis_RabbitMQLimitsAndTexts(t *testing.T) {
	wrap := func(prefix, tag, value string) string {
		return prefix + "{" + tag + ",\n" + strings.Repeat(" ", len(prefix)+1) + value + "}"
	}
	cases := []struct {
		exp  string
		ms   int64
		text string // "" when accepted
	}{
		{"0", 0, ""},
		{"+7", 7, ""},
		{"007", 7, ""},
		{"-0", 0, ""},
		{"315360000000", MaxTTL, ""},
		{"315360000001", 0, "invalid expiration '315360000001': {value_too_large,315360000001}"},
		{"9223372036854775807", 0, wrap("invalid expiration '9223372036854775807': ", "value_too_large", "9223372036854775807")},
		{"99999999999999999999", 0, wrap("invalid expiration '99999999999999999999': ", "value_too_large", "99999999999999999999")},
		{"-99999999999999999999", 0, wrap("invalid expiration '-99999999999999999999': ", "value_negative", "-99999999999999999999")},
		{"-5", 0, "invalid expiration '-5': {value_negative,-5}"},
		{"-000000000000000000000000000000000000000005", 0, wrap("invalid expiration '-000000000000000000000000000000000000000005': ", "value_negative", "-5")},
		{"0000000000000315360000001", 0, "invalid expiration '0000000000000315360000001': {value_too_large,315360000001}"},
		{"00000000000000315360000001", 0, wrap("invalid expiration '00000000000000315360000001': ", "value_too_large", "315360000001")},
		{" 5", 0, "invalid expiration ' 5': no_integer"},
		{"abc", 0, "invalid expiration 'abc': no_integer"},
		{"1.5", 0, `invalid expiration '1.5': {leftover_string,".5"}`},
		{"5a\"b\\c", 0, `invalid expiration '5a"b\c': {leftover_string,"a\"b\\c"}`},
		{"5\nz", 0, "invalid expiration '5\nz': {leftover_string,\"\\nz\"}"},
		{"5\x01", 0, "invalid expiration '5\x01': {leftover_string,[1]}"},
		{"5\x01\x7f", 0, "invalid expiration '5\x01\x7f': {leftover_string,[1,127]}"},
		{"5\xc3\xa9", 0, "invalid expiration '5\xc3\xa9': {leftover_string,\"\xc3\xa9\"}"},
	}
	for _, c := range cases {
		props := (&amqp.Properties{Expiration: c.exp}).AppendTo(nil)
		m, err := New("", "q", props, nil)
		if err != nil {
			t.Fatal(err)
		}
		ms, ok, err := m.ExpirationMillis()
		if !ok {
			t.Fatalf("%q: expiration not seen", c.exp)
		}
		if c.text == "" {
			if err != nil || ms != c.ms {
				t.Errorf("%q: got %d, %v; want %d", c.exp, ms, err, c.ms)
			}
			continue
		}
		var ae *amqp.Error
		if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed || ae.Text != "PRECONDITION_FAILED - "+c.text {
			t.Errorf("%q: got %v\nwant 406 %q", c.exp, err, c.text)
		}
	}
}
