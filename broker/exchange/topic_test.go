package exchange

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// routeBounded routes key through x in a goroutine and fails the test if it takes longer than
// limit or allocates more than maxAlloc bytes (issue 18: the recursive matcher took 6 s for a
// 56-word key and 2.6 GB for a 255-byte one).
func routeBounded(t *testing.T, x *Exchange, key string, limit time.Duration, maxAlloc uint64) []Destination {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	done := make(chan []Destination, 1)
	start := time.Now()
	go func() { done <- x.Route(key, nil, nil) }()
	select {
	case got := <-done:
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if took > limit {
			t.Fatalf("route of %d-byte key took %v (limit %v)", len(key), took, limit)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxAlloc {
			t.Fatalf("route of %d-byte key allocated %d bytes (limit %d)", len(key), alloc, maxAlloc)
		}
		return got
	case <-time.After(limit):
		t.Fatalf("route of %d-byte key still running after %v", len(key), limit)
		return nil
	}
}

func TestTopic_PathologicalPatternsBounded(t *testing.T) {
	hashes255 := strings.TrimSuffix(strings.Repeat("#.", 128), ".") // 255 bytes
	cases := []struct {
		name, pattern, key string
		match              bool
	}{
		{"hashes then z, 56 words", "#.#.#.#.#.#.z", strings.Repeat("a.", 55) + "z", true},
		{"hashes then z, no z", "#.#.#.#.#.#.z", strings.Repeat("a.", 55) + "y", false},
		{"255-byte hashes, 255-byte key", hashes255, strings.Repeat("a.", 127) + "a", true},
		{"255-byte hashes, empty words", hashes255, strings.Repeat(".", 255), true},
		{"hash star alternation", strings.TrimSuffix(strings.Repeat("#.*.", 64), "."), strings.Repeat("a.", 127) + "a", true},
		{"hash star alternation, too short", strings.TrimSuffix(strings.Repeat("#.*.", 64), "."), strings.Repeat("a.", 62) + "a", false},
		{"hashes around literals", strings.TrimSuffix(strings.Repeat("#.a.", 60), "."), strings.Repeat("a.", 127) + "b", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x, _ := New("t", Topic, Options{})
			x.Bind(Binding{Dest: dest("q"), Key: c.pattern})
			got := routeBounded(t, x, c.key, 2*time.Second, 1<<20)
			if (len(got) == 1) != c.match {
				t.Fatalf("pattern %q key %q: routed to %v, want match=%v", c.pattern, c.key, names(got), c.match)
			}
		})
	}
}

// TestTopic_ManyHashBindingsBounded: many distinct long '#'/'*' patterns to one queue stay
// polynomial: each (trie node, key position) pair is visited once.
func TestTopic_ManyHashBindingsBounded(t *testing.T) {
	x, _ := New("t", Topic, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		w := make([]string, 60)
		for j := range w {
			w[j] = [...]string{"#", "*", "a"}[rng.IntN(3)]
		}
		x.Bind(Binding{Dest: dest("q"), Key: strings.Join(w, ".")})
	}
	got := routeBounded(t, x, strings.Repeat("a.", 127)+"a", 5*time.Second, 8<<20)
	if len(got) > 1 {
		t.Fatalf("destination returned %d times", len(got))
	}
}

// refMatch is the definition of topic matching, by recursion over words (exponential, for
// small inputs only).
func refMatch(p, k []string) bool {
	if len(p) == 0 {
		return len(k) == 0
	}
	switch p[0] {
	case "#":
		return refMatch(p[1:], k) || (len(k) > 0 && refMatch(p, k[1:]))
	case "*":
		return len(k) > 0 && refMatch(p[1:], k[1:])
	default:
		return len(k) > 0 && k[0] == p[0] && refMatch(p[1:], k[1:])
	}
}

func randomWords(rng *rand.Rand, alphabet []string, max int) string {
	w := make([]string, rng.IntN(max+1))
	for i := range w {
		w[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return strings.Join(w, ".")
}

// TestTopic_MatchesReference compares routing against refMatch over random patterns and keys,
// with bindings added and removed between rounds (pruning must keep the trie right).
func TestTopic_MatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 1))
	patAlphabet := []string{"a", "b", "", "*", "#", "#", "*"}
	keyAlphabet := []string{"a", "b", ""}
	for round := range 200 {
		x, _ := New("t", Topic, Options{})
		bound := map[string]string{} // dest name → pattern
		for i := range 30 {
			p := randomWords(rng, patAlphabet, 7)
			d := fmt.Sprint("q", i)
			x.Bind(Binding{Dest: dest(d), Key: p})
			bound[d] = p
			if i%3 == 0 { // a second pattern to the same queue: routed to it once
				x.Bind(Binding{Dest: dest(d), Key: randomWords(rng, patAlphabet, 7)})
			}
		}
		// remove a few bindings
		for d, p := range bound {
			if rng.IntN(4) == 0 {
				if _, ok := x.Unbind(Binding{Dest: dest(d), Key: p}); !ok {
					t.Fatalf("unbind %s %q failed", d, p)
				}
				delete(bound, d)
			}
		}
		all := x.Bindings()
		for range 50 {
			k := randomWords(rng, keyAlphabet, 8)
			var want []string
			for _, b := range all {
				if refMatch(splitKey(b.Key), splitKey(k)) && !slices.Contains(want, b.Dest.DestName()) {
					want = append(want, b.Dest.DestName())
				}
			}
			slices.Sort(want)
			got := names(x.Route(k, nil, nil))
			if !slices.Equal(got, want) {
				t.Fatalf("round %d key %q: got %v want %v (bindings %v)", round, k, got, want, all)
			}
			if again := names(x.Route(k, nil, nil)); !slices.Equal(again, want) { // cached
				t.Fatalf("round %d key %q cached: got %v want %v", round, k, again, want)
			}
		}
	}
}

// TestTopic_ConcurrentBindsDuringLongRoutes binds and unbinds while long routes yield
// part-way (run with -race): nothing breaks, and once the binds stop, routes (and the cache)
// agree with the reference again.
func TestTopic_ConcurrentBindsDuringLongRoutes(t *testing.T) {
	x, _ := New("t", Topic, Options{})
	rng := rand.New(rand.NewPCG(7, 7))
	for range 300 { // enough nodes that routes yield
		x.Bind(Binding{Dest: dest("bulk"), Key: randomWords(rng, []string{"#", "*", "a"}, 40)})
	}
	key := strings.TrimSuffix(strings.Repeat("a.", 60), ".")
	done := make(chan struct{})
	routed := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				routed <- n
				return
			default:
			}
			x.Route(key, nil, nil)
			x.Route(fmt.Sprint("a.", n), nil, nil)
			n++
		}
	}()
	brng := rand.New(rand.NewPCG(8, 8))
	for i := range 2000 {
		b := Binding{Dest: dest(fmt.Sprint("q", i%20)), Key: randomWords(brng, []string{"#", "*", "a", "b"}, 6)}
		x.Bind(b)
		if i%3 == 0 {
			x.Unbind(b)
		}
	}
	close(done)
	if n := <-routed; n == 0 {
		t.Fatal("no route ran during the binds")
	}
	all := x.Bindings()
	for _, k := range []string{key, "a", "a.b", "b.a.a", "", "a.a.a.a.a.a"} {
		var want []string
		for _, b := range all {
			if refMatch(splitKey(b.Key), splitKey(k)) && !slices.Contains(want, b.Dest.DestName()) {
				want = append(want, b.Dest.DestName())
			}
		}
		slices.Sort(want)
		for range 2 { // computed, then cached
			if got := names(x.Route(k, nil, nil)); !slices.Equal(got, want) {
				t.Fatalf("key %q: got %v want %v", k, got, want)
			}
		}
	}
}
