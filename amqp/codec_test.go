package amqp

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// fillRandom sets every exported field of the method struct to a random value.
func fillRandom(t *testing.T, m Method, rng *rand.Rand) {
	t.Helper()
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(rng.IntN(2) == 1)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(rng.Uint64() >> (64 - f.Type().Bits()))
		case reflect.String:
			n := rng.IntN(40)
			b := make([]byte, n)
			for j := range b {
				b[j] = byte('a' + rng.IntN(26))
			}
			f.SetString(string(b))
		case reflect.Map:
			f.Set(reflect.ValueOf(Table{"k": int32(rng.Int32()), "s": "v", "nested": Table{"b": true}}))
		default:
			t.Fatalf("%s: unhandled field kind %s", m.Name(), f.Kind())
		}
	}
}

// TestMethod_RoundTripEveryMethod encodes and decodes every generated method with random
// arguments and checks that the result equals the original and re-encodes to the same bytes.
func TestMethod_RoundTripEveryMethod(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	methods := allMethods()
	if len(methods) < 55 {
		t.Fatalf("only %d methods generated", len(methods))
	}
	for _, m := range methods {
		for range 20 {
			fillRandom(t, m, rng)
			payload := m.AppendTo(nil)
			got, err := DecodeMethod(payload)
			if err != nil {
				t.Fatalf("%s: decode: %v", m.Name(), err)
			}
			if got.ClassID() != m.ClassID() || got.MethodID() != m.MethodID() {
				t.Fatalf("%s: decoded as %s", m.Name(), got.Name())
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("%s: round trip mismatch\n got %#v\nwant %#v", m.Name(), got, m)
			}
			if again := got.AppendTo(nil); !bytes.Equal(again, payload) {
				t.Fatalf("%s: re-encoding differs", m.Name())
			}
			// Every strict prefix of the arguments must fail cleanly with a syntax error.
			for cut := 4; cut < len(payload); cut++ {
				_, err := DecodeMethod(payload[:cut])
				if err == nil {
					// Trailing bits or empty trailing strings can make a prefix valid only when
					// the cut removed nothing the decoder needs; that cannot happen for a strict
					// prefix, since every field consumes at least one byte.
					t.Fatalf("%s: prefix of %d/%d bytes decoded without error", m.Name(), cut, len(payload))
				}
				var e *Error
				if !errors.As(err, &e) || e.Code != FrameError {
					t.Fatalf("%s: prefix error %v, want FRAME_ERROR", m.Name(), err)
				}
			}
		}
	}
}

func TestMethod_BitsPackIntoOctets(t *testing.T) {
	// queue.declare: passive, durable, exclusive, auto-delete, no-wait are five bits in one octet.
	m := &QueueDeclare{Queue: "q", Durable: true, AutoDelete: true, NoWait: true}
	b := m.AppendTo(nil)
	// class(2) method(2) reserved(2) shortstr(1+1) bits(1) table(4)
	if len(b) != 13 {
		t.Fatalf("len %d, want 13: %x", len(b), b)
	}
	if bits := b[8]; bits != 0b11010 {
		t.Fatalf("bits %05b, want 11010 (durable, auto-delete, no-wait)", bits)
	}
}

func TestDecoder_UnknownMethodIsNotImplemented(t *testing.T) {
	var d Decoder
	_, err := d.Decode([]byte{0, 60, 0, 99})
	var e *Error
	if !errors.As(err, &e) || e.Code != NotImplemented || e.Scope != ScopeConnection {
		t.Fatalf("err %v, want NOT_IMPLEMENTED connection error", err)
	}
	if _, err := d.Decode([]byte{0, 60}); err == nil {
		t.Fatal("short payload decoded")
	}
	// Trailing bytes after the arguments are refused (RabbitMQ: FRAME_ERROR).
	p := append((&BasicQos{PrefetchCount: 1}).AppendTo(nil), 0)
	if _, err := d.Decode(p); err == nil || err.(*Error).Code != FrameError {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestDecoder_ReusesHotMethodsAndInternsStrings(t *testing.T) {
	var d Decoder
	p := (&BasicPublish{Exchange: "ex", RoutingKey: "rk", Mandatory: true}).AppendTo(nil)
	m1, err := d.Decode(p)
	if err != nil {
		t.Fatal(err)
	}
	pub := m1.(*BasicPublish)
	if pub.Exchange != "ex" || pub.RoutingKey != "rk" || !pub.Mandatory {
		t.Fatalf("decoded %+v", pub)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := d.Decode(p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("basic.publish decode allocates %.1f times, want 0", allocs)
	}
	// A method that is not reused is a fresh struct each time.
	q := (&QueueBind{Queue: "q"}).AppendTo(nil)
	a, _ := d.Decode(q)
	b, _ := d.Decode(q)
	if a == b {
		t.Fatal("queue.bind struct reused")
	}
}

func TestReplyCode_HardAndNames(t *testing.T) {
	cases := []struct {
		c    ReplyCode
		hard bool
		name string
	}{
		{NotFound, false, "NOT_FOUND"}, {PreconditionFailed, false, "PRECONDITION_FAILED"},
		{AccessRefused, false, "ACCESS_REFUSED"}, {ResourceLocked, false, "RESOURCE_LOCKED"},
		{NoRoute, false, "NO_ROUTE"}, {FrameError, true, "FRAME_ERROR"}, {ChannelError, true, "CHANNEL_ERROR"},
		{NotAllowed, true, "NOT_ALLOWED"}, {ConnectionForced, true, "CONNECTION_FORCED"},
		{UnexpectedFrame, true, "UNEXPECTED_FRAME"}, {NotImplemented, true, "NOT_IMPLEMENTED"},
	}
	for _, c := range cases {
		if c.c.IsHard() != c.hard || c.c.String() != c.name {
			t.Errorf("%d: hard=%v name=%s", c.c, c.c.IsHard(), c.c.String())
		}
	}
	err := ChannelErr(NotFound, "no queue '%s' in vhost '%s'", "q", "/")
	if err.Error() != "NOT_FOUND - no queue 'q' in vhost '/'" || err.(*Error).Scope != ScopeChannel {
		t.Fatalf("%v", err)
	}
	if ChannelErr(CommandInvalid, "x").(*Error).Scope != ScopeConnection {
		t.Fatal("hard code in ChannelErr must close the connection")
	}
}

func TestTable_RoundTripEveryType(t *testing.T) {
	tbl := Table{
		"bool": true, "false": false, "i8": int8(-5), "u8": uint8(250), "i16": int16(-300),
		"u16": uint16(60000), "i32": int32(-70000), "u32": uint32(4000000000), "i64": int64(-1 << 40),
		"f32": float32(1.5), "f64": 2.25, "dec": Decimal{Scale: 2, Value: -12345}, "str": "héllo",
		"ts": time.Unix(1700000000, 0).UTC(), "bytes": []byte{0, 1, 2}, "void": nil,
		"arr":    []any{int32(1), "two", []any{true}, Table{"x": int64(3)}},
		"nested": Table{"deeper": Table{"k": "v"}}, "empty": Table{}, "emptyarr": []any{},
	}
	b := AppendTable(nil, tbl)
	got, rest, err := ReadTable(append(b, 0xAA))
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 1 || rest[0] != 0xAA {
		t.Fatalf("rest %x", rest)
	}
	if !reflect.DeepEqual(got, tbl) {
		t.Fatalf("mismatch\n got %#v\nwant %#v", got, tbl)
	}
	if again := AppendTable(nil, got); !bytes.Equal(again, b) {
		t.Fatal("re-encoding differs")
	}
	if rest, err := skipTable(b, 0); err != nil || len(rest) != 0 {
		t.Fatalf("skipTable: %v %d", err, len(rest))
	}
	// int is encoded as 'l' and decodes as int64.
	got2, _, _ := ReadTable(AppendTable(nil, Table{"n": 7}))
	if got2["n"] != int64(7) {
		t.Fatalf("int decoded as %T", got2["n"])
	}
}

func TestTable_BadInputIsFrameError(t *testing.T) {
	cases := map[string][]byte{
		"short length":   {0, 0},
		"length overrun": {0, 0, 0, 10, 1, 'k'},
		"unknown tag":    {0, 0, 0, 3, 1, 'k', 'Z'},
		"truncated long": {0, 0, 0, 5, 1, 'k', 'I', 0, 0},
		"key overrun":    {0, 0, 0, 2, 5, 'k'},
		"string overrun": {0, 0, 0, 7, 1, 'k', 'S', 0, 0, 0, 9},
		"array overrun":  {0, 0, 0, 7, 1, 'k', 'A', 0, 0, 0, 9},
	}
	for name, b := range cases {
		_, _, err := ReadTable(b)
		var e *Error
		if !errors.As(err, &e) || e.Code != FrameError {
			t.Errorf("%s: ReadTable err %v, want FRAME_ERROR", name, err)
		}
		if _, err := skipTable(b, 0); err == nil {
			t.Errorf("%s: skipTable accepted", name)
		}
	}
	// Deep nesting is refused, not a stack overflow.
	deep := Table{}
	for range 5000 {
		deep = Table{"n": deep}
	}
	if _, _, err := ReadTable(AppendTable(nil, deep)); err == nil {
		t.Fatal("deeply nested table accepted")
	}
}

// nested returns a table holding n containers nested one in the other: tables, arrays, or
// both in turn.
func nested(n int, shape string) Table {
	var v any = "leaf"
	for i := range n {
		if shape == "tables" || (shape == "mixed" && i%2 == 0) {
			v = Table{"n": v}
		} else {
			v = []any{int32(1), v}
		}
	}
	return Table{"top": v}
}

// RabbitMQ accepts field tables nested as deep as fit in a frame (10,000 levels in a 128 KiB
// frame); Warren accepts 1,000 levels of tables and arrays inside a table and refuses more
// with 501 FRAME_ERROR (maxTableDepth: decoding is recursive). Both decoders agree, in
// method arguments and in content headers.
func TestTable_NestingUpToTheLimit(t *testing.T) {
	const limit = 1000 // documented in table.go and docs/design.md
	for _, shape := range []string{"tables", "arrays", "mixed"} {
		ok := AppendTable(nil, nested(limit, shape))
		if _, rest, err := ReadTable(ok); err != nil || len(rest) != 0 {
			t.Fatalf("%s nested %d deep: ReadTable %v", shape, limit, err)
		}
		if _, err := skipTable(ok, 0); err != nil {
			t.Fatalf("%s nested %d deep: skipTable %v", shape, limit, err)
		}
		raw := (&Properties{Headers: nested(limit, shape)}).AppendTo(nil)
		if _, err := ScanProperties(raw); err != nil {
			t.Fatalf("%s headers nested %d deep: ScanProperties %v", shape, limit, err)
		}
		if _, err := DecodeProperties(raw); err != nil {
			t.Fatalf("%s headers nested %d deep: DecodeProperties %v", shape, limit, err)
		}
		deep := AppendTable(nil, nested(limit+1, shape))
		var e *Error
		if _, _, err := ReadTable(deep); !errors.As(err, &e) || e.Code != FrameError {
			t.Fatalf("%s nested %d deep: ReadTable %v, want FRAME_ERROR", shape, limit+1, err)
		}
		if _, err := skipTable(deep, 0); !errors.As(err, &e) || e.Code != FrameError {
			t.Fatalf("%s nested %d deep: skipTable %v, want FRAME_ERROR", shape, limit+1, err)
		}
		raw = (&Properties{Headers: nested(limit+1, shape)}).AppendTo(nil)
		if _, err := ScanProperties(raw); !errors.As(err, &e) || e.Code != FrameError {
			t.Fatalf("%s headers nested %d deep: ScanProperties %v, want FRAME_ERROR", shape, limit+1, err)
		}
	}
	// An empty array one level too deep is refused by both decoders alike.
	var v any = []any{}
	for range limit {
		v = Table{"n": v}
	}
	b := AppendTable(nil, Table{"top": v})
	_, _, err := ReadTable(b)
	_, serr := skipTable(b, 0)
	if err == nil || serr == nil {
		t.Fatalf("empty array %d deep: ReadTable %v, skipTable %v", limit+1, err, serr)
	}
}

func TestProperties_RoundTripAll14(t *testing.T) {
	p := Properties{
		ContentType: "application/json", ContentEncoding: "gzip",
		Headers:      Table{"x-trace": "abc", "n": int32(5)},
		DeliveryMode: 2, Priority: 7, CorrelationID: "corr", ReplyTo: "amq.rabbitmq.reply-to",
		Expiration: "60000", MessageID: "m-1", Timestamp: time.Unix(1234567890, 0).UTC(),
		Type: "t", UserID: "guest", AppID: "app", ClusterID: "c",
	}
	raw := p.AppendTo(nil)
	got, err := DecodeProperties(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := p
	want.Flags = 0xFFFC
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mismatch\n got %#v\nwant %#v", got, want)
	}
	s, err := ScanProperties(raw)
	if err != nil {
		t.Fatal(err)
	}
	if s.DeliveryMode != 2 || s.Priority != 7 || string(s.Expiration) != "60000" || string(s.UserID) != "guest" ||
		string(s.MessageID) != "m-1" || s.Timestamp != 1234567890 || !s.Persistent() {
		t.Fatalf("summary %+v", s)
	}
	h, _, err := ReadTable(s.Headers)
	if err != nil || h["x-trace"] != "abc" {
		t.Fatalf("headers %v %v", h, err)
	}
	if allocs := testing.AllocsPerRun(100, func() { ScanProperties(raw) }); allocs != 0 {
		t.Fatalf("ScanProperties allocates %.0f", allocs)
	}
	// Empty properties: just the flag word.
	var empty Properties
	if b := empty.AppendTo(nil); !bytes.Equal(b, []byte{0, 0}) {
		t.Fatalf("empty properties %x", b)
	}
	// Every prefix of a full property list is rejected.
	for cut := 0; cut < len(raw); cut++ {
		if _, err := ScanProperties(raw[:cut]); err == nil {
			t.Fatalf("prefix %d/%d accepted", cut, len(raw))
		}
	}
}

func TestContentHeader_Parse(t *testing.T) {
	p := Properties{ContentType: "text/plain", DeliveryMode: 1}
	frame := AppendContentHeader(nil, 3, 12345, p.AppendTo(nil))
	fr := NewFrameReader(bytes.NewReader(frame), 0)
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != FrameHeader || f.Channel != 3 {
		t.Fatalf("frame %+v", f)
	}
	h, err := ParseContentHeader(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if h.ClassID != ClassBasic || h.BodySize != 12345 || !bytes.Equal(h.RawProps, p.AppendTo(nil)) {
		t.Fatalf("header %+v", h)
	}
	if _, err := ParseContentHeader(f.Payload[:10]); err == nil {
		t.Fatal("short header accepted")
	}
}

func TestHotEncoders_MatchGenerated(t *testing.T) {
	check := func(name string, got []byte, m Method, ch uint16) {
		t.Helper()
		want := AppendMethodFrame(nil, ch, m)
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %x\nwant %x", name, got, want)
		}
	}
	check("deliver", AppendBasicDeliver(nil, 7, "ctag", 99, true, "ex", "rk"), &BasicDeliver{ConsumerTag: "ctag", DeliveryTag: 99, Redelivered: true, Exchange: "ex", RoutingKey: "rk"}, 7)
	check("get-ok", AppendBasicGetOk(nil, 2, 5, false, "", "q", 12), &BasicGetOk{DeliveryTag: 5, RoutingKey: "q", MessageCount: 12}, 2)
	check("ack", AppendBasicAck(nil, 1, 42, true, false), &BasicAck{DeliveryTag: 42, Multiple: true}, 1)
	check("nack", AppendBasicAck(nil, 1, 42, false, true), &BasicNack{DeliveryTag: 42}, 1)
	buf := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(100, func() { AppendBasicDeliver(buf[:0], 1, "ctag", 1, false, "e", "k") }); a != 0 {
		t.Fatalf("AppendBasicDeliver allocates %.0f", a)
	}
}

func TestTableHasKey(t *testing.T) {
	raw := AppendTable(nil, Table{"CC": []any{"a"}, "x": int32(1), "nested": Table{"BCC": "no"}})
	if !TableHasKey(raw, "CC") || !TableHasKey(raw, "x") || TableHasKey(raw, "BCC") || TableHasKey(raw, "nested2") {
		t.Fatal("TableHasKey answers wrong")
	}
	if TableHasKey(raw[:6], "CC") || TableHasKey(nil, "CC") {
		t.Fatal("truncated table")
	}
	if a := testing.AllocsPerRun(100, func() { TableHasKey(raw, "BCC") }); a != 0 {
		t.Fatalf("allocates %.0f", a)
	}
}

// RabbitMQ 3.10 refuses malformed UTF-8 in the short strings of the methods a client sends
// (names, routing keys of bindings, consumer tags, exchange types, reply texts, the vhost)
// with 501 "Malformed UTF-8 in shortstr", except in basic.publish, whose exchange and routing
// key are not checked. Its check is structural: overlong forms and bytes that cannot start or
// continue a sequence are malformed, while surrogates and 4-byte forms up to F7 BF BF BF are
// accepted (sequences probed against RabbitMQ 3.10.8).
func TestDecode_MalformedUTF8InShortstr(t *testing.T) {
	cases := []struct {
		s     string
		valid bool
	}{
		{"plain", true}, {"", true}, {"a\x00b", true}, {"é", true}, {"\xe2\x82\xac", true},
		{"\xf0\x9f\x98\x80", true}, {"a\xed\xa0\x80b", true}, {"a\xed\xbf\xbfb", true}, {"a\xef\xbf\xbeb", true},
		{"a\xf4\x90\x80\x80b", true}, {"a\xf5\x80\x80\x80b", true}, {"a\xf7\xbf\xbf\xbfb", true},
		{"a\xc2\x80b", true}, {"a\xe0\xa0\x80b", true}, {"a\xf0\x90\x80\x80b", true},
		{"probe-\xff\xfe", false}, {"a\xc0\xafb", false}, {"a\xc1\xbfb", false}, {"a\xe0\x80\xafb", false},
		{"a\xe0\x9f\xbfb", false}, {"a\xf0\x80\x80\xafb", false}, {"a\xf0\x8f\xbf\xbfb", false},
		{"a\xf8\x88\x80\x80\x80b", false}, {"a\x80b", false}, {"a\xc2", false}, {"a\xc2b", false},
		{"a\xe0\xa0", false}, {"a\xe0\xa0b", false}, {"a\xfeb", false}, {"a\xffb", false},
	}
	for _, c := range cases {
		for _, m := range []Method{
			&QueueDeclare{Queue: c.s},
			&ExchangeDeclare{Exchange: "x", Type: c.s},
			&QueueBind{Queue: "q", Exchange: "x", RoutingKey: c.s},
			&BasicConsume{Queue: "q", ConsumerTag: c.s},
			&ChannelClose{ReplyText: c.s},
			&ConnectionOpen{VirtualHost: c.s},
		} {
			var d Decoder
			_, err := d.Decode(m.AppendTo(nil))
			if c.valid {
				if err != nil {
					t.Errorf("%s with %q: %v", m.Name(), c.s, err)
				}
				continue
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != FrameError || e.Text != "FRAME_ERROR - Malformed UTF-8 in shortstr" || e.Scope != ScopeConnection || !errors.Is(err, ErrMalformedUTF8) {
				t.Errorf("%s with %q: %v, want 501 Malformed UTF-8 in shortstr", m.Name(), c.s, err)
				continue
			}
			// As RabbitMQ: the close names the method for connection.open, none for the others.
			wantClass, wantMethod := uint16(0), uint16(0)
			if m.ClassID() == ClassConnection {
				wantClass, wantMethod = m.ClassID(), m.MethodID()
			}
			if e.ClassID != wantClass || e.MethodID != wantMethod {
				t.Errorf("%s with %q: close names %d.%d, want %d.%d", m.Name(), c.s, e.ClassID, e.MethodID, wantClass, wantMethod)
			}
		}
		// basic.publish is not checked.
		var d Decoder
		if _, err := d.Decode((&BasicPublish{Exchange: c.s, RoutingKey: c.s}).AppendTo(nil)); err != nil {
			t.Errorf("basic.publish with %q: %v", c.s, err)
		}
	}
}
