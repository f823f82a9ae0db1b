package exchange

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/warrenmq/warren/amqp"
)

type dest string

func (d dest) DestName() string { return string(d) }
func (d dest) IsExchange() bool { return false }

func names(ds []Destination) []string {
	var s []string
	for _, d := range ds {
		s = append(s, d.DestName())
	}
	sort.Strings(s)
	return s
}

func TestTopic_Matching(t *testing.T) {
	cases := []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{"a.b.c", []string{"a.b.c"}, []string{"a.b", "a.b.c.d", "a.x.c"}},
		{"*.b.*", []string{"a.b.c", "x.b.y"}, []string{"a.b", "b.c", "a.b.c.d"}},
		{"#", []string{"", "a", "a.b.c"}, nil},
		{"a.#", []string{"a", "a.b", "a.b.c"}, []string{"b.a", ""}},
		{"#.c", []string{"c", "a.c", "a.b.c"}, []string{"c.a", ""}},
		{"a.#.b", []string{"a.b", "a.x.b", "a.x.y.b"}, []string{"a", "b", "a.b.c"}},
		{"*", []string{"a", "abc"}, []string{"", "a.b"}},
		{"a.*.#", []string{"a.b", "a.b.c"}, []string{"a"}},
		{"#.#", []string{"", "a", "a.b"}, nil},
		{"a..b", []string{"a..b"}, []string{"a.b"}},
		{"", []string{""}, []string{"a"}},
		{"*.*", []string{"a.b", ".a", "a."}, []string{"a"}},
	}
	for _, c := range cases {
		x, _ := New("t", Topic, Options{})
		x.Bind(Binding{Dest: dest("q"), Key: c.pattern})
		for _, k := range c.match {
			if got := x.Route(k, nil, nil); len(got) != 1 {
				t.Errorf("pattern %q should match %q (got %v)", c.pattern, k, names(got))
			}
		}
		for _, k := range c.nomatch {
			if got := x.Route(k, nil, nil); len(got) != 0 {
				t.Errorf("pattern %q should not match %q", c.pattern, k)
			}
		}
	}
}

func TestTopic_DedupeCacheAndUnbind(t *testing.T) {
	x, _ := New("t", Topic, Options{})
	q1, q2 := dest("q1"), dest("q2")
	x.Bind(Binding{Dest: q1, Key: "a.*"})
	x.Bind(Binding{Dest: q1, Key: "#"})
	x.Bind(Binding{Dest: q2, Key: "a.b"})
	if got := names(x.Route("a.b", nil, nil)); fmt.Sprint(got) != "[q1 q2]" {
		t.Fatalf("got %v", got)
	}
	// cached result is the same; unbinding invalidates the cache
	if got := names(x.Route("a.b", nil, nil)); fmt.Sprint(got) != "[q1 q2]" {
		t.Fatalf("cached got %v", got)
	}
	if _, ok := x.Unbind(Binding{Dest: q2, Key: "a.b"}); !ok {
		t.Fatal("unbind failed")
	}
	if _, ok := x.Unbind(Binding{Dest: q2, Key: "a.b"}); ok {
		t.Fatal("second unbind succeeded")
	}
	if got := names(x.Route("a.b", nil, nil)); fmt.Sprint(got) != "[q1]" {
		t.Fatalf("after unbind got %v", got)
	}
	if n := len(x.UnbindDest(q1)); n != 2 {
		t.Fatalf("UnbindDest removed %d", n)
	}
	if got := x.Route("a.b", nil, nil); len(got) != 0 {
		t.Fatalf("after UnbindDest got %v", names(got))
	}
}

func TestDirectAndFanout(t *testing.T) {
	d, _ := New("d", Direct, Options{})
	d.Bind(Binding{Dest: dest("q1"), Key: "k"})
	if !d.Bind(Binding{Dest: dest("q2"), Key: "k"}) || d.Bind(Binding{Dest: dest("q2"), Key: "k"}) {
		t.Fatal("bind idempotence")
	}
	if got := names(d.Route("k", nil, nil)); fmt.Sprint(got) != "[q1 q2]" {
		t.Fatalf("direct %v", got)
	}
	if got := d.Route("other", nil, nil); len(got) != 0 {
		t.Fatal("direct matched other key")
	}
	f, _ := New("f", Fanout, Options{})
	f.Bind(Binding{Dest: dest("q1"), Key: "x"})
	f.Bind(Binding{Dest: dest("q2")})
	if got := names(f.Route("anything", nil, nil)); fmt.Sprint(got) != "[q1 q2]" {
		t.Fatalf("fanout %v", got)
	}
	if _, err := New("x", "nope", Options{}); err == nil {
		t.Fatal("unknown type accepted")
	}
}

func TestHeadersMatch(t *testing.T) {
	h := amqp.Table{"a": int32(1), "b": "x", "x-extra": "y"}
	cases := []struct {
		args amqp.Table
		want bool
	}{
		{amqp.Table{"a": int64(1), "b": "x"}, true},
		{amqp.Table{"x-match": "all", "a": int32(1), "c": "z"}, false},
		{amqp.Table{"x-match": "any", "a": int32(2), "b": "x"}, true},
		{amqp.Table{"x-match": "any", "a": int32(2)}, false},
		{amqp.Table{"x-match": "all", "x-extra": "nope", "a": int32(1)}, true},
		{amqp.Table{"x-match": "all-with-x", "x-extra": "nope", "a": int32(1)}, false},
		{amqp.Table{"x-match": "all-with-x", "x-extra": "y"}, true},
		{amqp.Table{"x-match": "any-with-x", "x-extra": "y", "a": int32(9)}, true},
		{amqp.Table{"c": nil}, false},
		{amqp.Table{"a": nil}, true},
		{amqp.Table{"x-match": "all"}, true},
		{amqp.Table{"x-match": "any"}, false},
	}
	for i, c := range cases {
		if got := HeadersMatch(c.args, h); got != c.want {
			t.Errorf("case %d %v: got %v", i, c.args, got)
		}
	}
}

func BenchmarkTopicMatch(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			x, _ := New("t", Topic, Options{})
			for i := range n {
				x.Bind(Binding{Dest: dest(fmt.Sprint("q", i)), Key: fmt.Sprintf("app%d.*.log", i)})
			}
			x.Bind(Binding{Dest: dest("all"), Key: "#.error"})
			out := make([]Destination, 0, 8)
			b.ReportAllocs()
			for b.Loop() {
				out = x.Route("app7.node.log", nil, out[:0])
			}
		})
	}
}

// BenchmarkTopicMatchUncached routes keys that miss the route cache (each key once per
// 8192 iterations, more than the cache holds), so every route runs the matcher.
func BenchmarkTopicMatchUncached(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			x, _ := New("t", Topic, Options{})
			for i := range n {
				x.Bind(Binding{Dest: dest(fmt.Sprint("q", i)), Key: fmt.Sprintf("app%d.*.log", i)})
			}
			x.Bind(Binding{Dest: dest("all"), Key: "#.error"})
			keys := make([]string, 8192)
			for i := range keys {
				keys[i] = fmt.Sprintf("app%d.node%d.log", i%n, i)
			}
			out := make([]Destination, 0, 8)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				out = x.Route(keys[i%len(keys)], nil, out[:0])
				i++
			}
		})
	}
}

// BenchmarkTopicPathological routes a key of n words "a" ending in "z" through the binding
// "#.#.#.#.#.#.z" (issue 18: exponential in the old recursive matcher), bypassing the cache.
func BenchmarkTopicPathological(b *testing.B) {
	for _, n := range []int{8, 16, 24, 56} {
		b.Run(fmt.Sprintf("words=%d", n), func(b *testing.B) {
			x, _ := New("t", Topic, Options{})
			x.Bind(Binding{Dest: dest("q"), Key: "#.#.#.#.#.#.z"})
			key := strings.Repeat("a.", n-1) + "z"
			out := make([]Destination, 0, 8)
			b.ReportAllocs()
			for b.Loop() {
				x.r.(*topic).clearCache()
				out = x.Route(key, nil, out[:0])
			}
			if len(out) != 1 {
				b.Fatalf("routed to %d", len(out))
			}
		})
	}
	// A 255-byte pattern of "#" words against a 255-byte key (issue 18: 2.6 GB, never finished).
	b.Run("pattern=hashes255", func(b *testing.B) {
		x, _ := New("t", Topic, Options{})
		x.Bind(Binding{Dest: dest("q"), Key: strings.TrimSuffix(strings.Repeat("#.", 128), ".")})
		key := strings.Repeat("a.", 127) + "a"
		out := make([]Destination, 0, 8)
		b.ReportAllocs()
		for b.Loop() {
			x.r.(*topic).clearCache()
			out = x.Route(key, nil, out[:0])
		}
		if len(out) != 1 {
			b.Fatalf("routed to %d", len(out))
		}
	})
}
