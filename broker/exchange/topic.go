package exchange

import (
	"strings"
	"sync"

	"github.com/warrenmq/warren/amqp"
)

// topic routes with a trie over dot-separated words; "*" matches one word and "#" zero or more.
// Results are cached per routing key (cleared on any binding change, bounded in size).
//
// Matching walks the trie like an NFA over the key's words: before each word it holds the set
// of trie nodes that the words so far can reach, each node at most once, and a "#" node stays
// in the set for every further word (a self-loop) and adds its own "#" child without a word.
// So a route visits each (trie node, key position) pair at most once: O(nodes × words) time
// and O(nodes) memory, where a recursive walk is exponential in the number of "#" words
// (issue 18: "#.#.#.#.#.#.z" against a 56-word key took 6 s and 0.5 GB).
type topic struct {
	root *topicNode
	gen  uint64 // bumped by every binding change; guarded by the exchange's lock

	// Node ids index topicScratch.seen; ids of pruned nodes are reused. Guarded by the
	// exchange's lock.
	nextID  uint32
	freeIDs []uint32

	// yield is called now and then during a match, with the exchange's read lock held; it may
	// release and retake it to let a waiting binding change in (Exchange.yieldRead).
	yield func()

	scratch sync.Pool // *topicScratch

	cacheMu sync.Mutex // route runs under the exchange's read lock, concurrently
	cache   map[string][]Destination
	cached  int // destinations held in cache
}

type topicNode struct {
	words    map[string]*topicNode // children by literal word
	star     *topicNode            // child "*"
	hash     *topicNode            // child "#"
	bindings []Binding             // bindings whose pattern ends at this node
	id       uint32
	selfLoop bool // the node is a "#": it also matches any number of further words
}

// The route cache holds at most this many keys, and at most topicCacheDests destinations in
// all; beyond either it starts over.
const (
	topicCacheMax   = 4096
	topicCacheDests = 1 << 16
)

// topicYieldEvery is how many node visits a match makes between calls to yield.
const topicYieldEvery = 1024

func newTopic() *topic { return &topic{root: &topicNode{}, nextID: 1} }

// splitKey splits a routing key or pattern into words; the empty key has no words.
func splitKey(k string) []string {
	if k == "" {
		return nil
	}
	return strings.Split(k, ".")
}

func (t *topic) clearCache() {
	t.cacheMu.Lock()
	t.cache = nil
	t.cached = 0
	t.cacheMu.Unlock()
}

func (n *topicNode) child(w string) *topicNode {
	switch w {
	case "*":
		return n.star
	case "#":
		return n.hash
	}
	return n.words[w]
}

func (t *topic) addChild(n *topicNode, w string) *topicNode {
	c := &topicNode{selfLoop: w == "#"}
	if k := len(t.freeIDs); k > 0 {
		c.id = t.freeIDs[k-1]
		t.freeIDs = t.freeIDs[:k-1]
	} else {
		c.id = t.nextID
		t.nextID++
	}
	switch w {
	case "*":
		n.star = c
	case "#":
		n.hash = c
	default:
		if n.words == nil {
			n.words = make(map[string]*topicNode)
		}
		n.words[w] = c
	}
	return c
}

func (t *topic) removeChild(n *topicNode, w string) {
	c := n.child(w)
	switch w {
	case "*":
		n.star = nil
	case "#":
		n.hash = nil
	default:
		delete(n.words, w)
	}
	t.freeIDs = append(t.freeIDs, c.id)
}

func (n *topicNode) empty() bool {
	return len(n.bindings) == 0 && len(n.words) == 0 && n.star == nil && n.hash == nil
}

func (t *topic) add(b Binding) bool {
	n := t.root
	for _, w := range splitKey(b.Key) {
		c := n.child(w)
		if c == nil {
			c = t.addChild(n, w)
		}
		n = c
	}
	for _, e := range n.bindings {
		if sameBinding(e, b) {
			return false
		}
	}
	n.bindings = append(n.bindings, b)
	t.gen++
	t.clearCache()
	return true
}

func (t *topic) has(b Binding) bool {
	n := t.root
	for _, w := range splitKey(b.Key) {
		if n = n.child(w); n == nil {
			return false
		}
	}
	return hasBinding(n.bindings, b)
}

func (t *topic) remove(b Binding) bool {
	words := splitKey(b.Key)
	path := make([]*topicNode, 0, len(words)+1)
	n := t.root
	path = append(path, n)
	for _, w := range words {
		n = n.child(w)
		if n == nil {
			return false
		}
		path = append(path, n)
	}
	for i, e := range n.bindings {
		if sameBinding(e, b) {
			// A new slice: a match that yielded may still hold the node (never the old slice
			// while it reads, as it reads under the read lock).
			n.bindings = append(n.bindings[:i:i], n.bindings[i+1:]...)
			// prune empty nodes bottom-up; a pruned node is left empty and unreachable
			for j := len(words); j > 0 && path[j].empty(); j-- {
				t.removeChild(path[j-1], words[j-1])
			}
			t.gen++
			t.clearCache()
			return true
		}
	}
	return false
}

func (t *topic) route(key string, _ func() amqp.Table, out []Destination) []Destination {
	t.cacheMu.Lock()
	c, ok := t.cache[key]
	t.cacheMu.Unlock()
	if ok {
		return append(out, c...)
	}
	gen := t.gen
	start := len(out)
	out = t.match(key, out)
	// A destination can be reached through several patterns; keep each once.
	out = dedupe(out, start)
	if t.gen != gen {
		return out // bindings changed while the match yielded: don't cache a mixed result
	}
	t.cacheMu.Lock()
	if t.cache == nil || len(t.cache) >= topicCacheMax || t.cached+len(out)-start > topicCacheDests {
		t.cache = make(map[string][]Destination)
		t.cached = 0
	}
	t.cache[key] = append([]Destination(nil), out[start:]...)
	t.cached += len(out) - start
	t.cacheMu.Unlock()
	return out
}

// topicScratch is one match's working memory, pooled.
type topicScratch struct {
	seen      []uint32 // by node id: the step at which the node joined the current set
	step      uint32
	cur, next []*topicNode
}

// nextStep starts a new node set: every node counts as unseen.
func (s *topicScratch) nextStep() {
	s.step++
	if s.step == 0 { // wrapped: old stamps could look current
		clear(s.seen)
		s.step = 1
	}
}

// add puts n into set unless it is there already, with the chain of "#" children under it
// ("#" matches zero words).
func (s *topicScratch) add(set []*topicNode, n *topicNode) []*topicNode {
	for ; n != nil; n = n.hash {
		if int(n.id) >= len(s.seen) { // a node added while the match yielded
			s.seen = append(s.seen, make([]uint32, int(n.id)+1-len(s.seen))...)
		}
		if s.seen[n.id] == s.step {
			break // its "#" chain was added with it
		}
		s.seen[n.id] = s.step
		set = append(set, n)
	}
	return set
}

// match appends the destinations of the bindings whose pattern matches key (a destination
// bound by several patterns appears once per pattern).
func (t *topic) match(key string, out []Destination) []Destination {
	s, _ := t.scratch.Get().(*topicScratch)
	if s == nil {
		s = &topicScratch{}
	}
	if n := int(t.nextID); len(s.seen) < n {
		s.seen = append(s.seen, make([]uint32, n-len(s.seen))...)
	}
	s.nextStep()
	cur, next := s.add(s.cur[:0], t.root), s.next[:0]
	visits := 0
	for rest, more := key, key != ""; more && len(cur) > 0; {
		var word string
		word, rest, more = strings.Cut(rest, ".")
		s.nextStep()
		next = next[:0]
		for _, n := range cur {
			if n.selfLoop {
				next = s.add(next, n)
			}
			if c := n.words[word]; c != nil {
				next = s.add(next, c)
			}
			if n.star != nil {
				next = s.add(next, n.star)
			}
			if visits++; visits == topicYieldEvery {
				visits = 0
				if t.yield != nil {
					t.yield()
				}
			}
		}
		cur, next = next, cur
	}
	for _, n := range cur {
		for _, b := range n.bindings {
			out = append(out, b.Dest)
		}
	}
	clear(cur)
	clear(next)
	s.cur, s.next = cur[:0], next[:0]
	t.scratch.Put(s)
	return out
}

// dedupe removes repeated destinations from out[start:], keeping the first of each.
func dedupe(out []Destination, start int) []Destination {
	n := len(out) - start
	if n < 2 {
		return out
	}
	kept := out[:start]
	if n > 32 {
		seen := make(map[Destination]struct{}, n)
		for _, d := range out[start:] {
			if _, dup := seen[d]; !dup {
				seen[d] = struct{}{}
				kept = append(kept, d)
			}
		}
	} else {
		for i := start; i < len(out); i++ {
			dup := false
			for _, d := range kept[start:] {
				if d == out[i] {
					dup = true
					break
				}
			}
			if !dup {
				kept = append(kept, out[i])
			}
		}
	}
	clear(out[len(kept):])
	return kept
}
