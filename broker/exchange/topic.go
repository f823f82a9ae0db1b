package exchange

import (
	"strings"
	"sync"

	"github.com/warrenmq/warren/amqp"
)

// topic routes with a trie over dot-separated words; "*" matches one word and "#" zero or more.
// Results are cached per routing key (cleared on any binding change, bounded in size).
type topic struct {
	root *topicNode

	cacheMu sync.Mutex // route runs under the exchange's read lock, concurrently
	cache   map[string][]Destination
}

type topicNode struct {
	children map[string]*topicNode
	bindings []Binding // bindings whose pattern ends at this node
}

const topicCacheMax = 4096

func newTopic() *topic { return &topic{root: &topicNode{}} }

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
	t.cacheMu.Unlock()
}

func (t *topic) add(b Binding) bool {
	n := t.root
	for _, w := range splitKey(b.Key) {
		if n.children == nil {
			n.children = make(map[string]*topicNode)
		}
		c := n.children[w]
		if c == nil {
			c = &topicNode{}
			n.children[w] = c
		}
		n = c
	}
	for _, e := range n.bindings {
		if sameBinding(e, b) {
			return false
		}
	}
	n.bindings = append(n.bindings, b)
	t.clearCache()
	return true
}

func (t *topic) has(b Binding) bool {
	n := t.root
	for _, w := range splitKey(b.Key) {
		if n = n.children[w]; n == nil {
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
		n = n.children[w]
		if n == nil {
			return false
		}
		path = append(path, n)
	}
	for i, e := range n.bindings {
		if sameBinding(e, b) {
			n.bindings = append(n.bindings[:i:i], n.bindings[i+1:]...)
			// prune empty nodes bottom-up
			for j := len(words); j > 0; j-- {
				c := path[j]
				if len(c.bindings) == 0 && len(c.children) == 0 {
					delete(path[j-1].children, words[j-1])
				} else {
					break
				}
			}
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
	start := len(out)
	out = t.match(t.root, key, key == "", out)
	// A destination can be reached through several patterns; keep each once.
	out = dedupe(out, start)
	t.cacheMu.Lock()
	if t.cache == nil || len(t.cache) >= topicCacheMax {
		t.cache = make(map[string][]Destination)
	}
	t.cache[key] = append([]Destination(nil), out[start:]...)
	t.cacheMu.Unlock()
	return out
}

// match appends destinations of bindings whose pattern matches the remaining words of key.
// done is true when key has no words left.
func (t *topic) match(n *topicNode, key string, done bool, out []Destination) []Destination {
	if done {
		for _, b := range n.bindings {
			out = append(out, b.Dest)
		}
		// "#" can match zero words at the end.
		if h := n.children["#"]; h != nil {
			out = t.match(h, "", true, out)
		}
		return out
	}
	word, rest, more := strings.Cut(key, ".")
	if c := n.children[word]; c != nil {
		out = t.match(c, rest, !more, out)
	}
	if c := n.children["*"]; c != nil {
		out = t.match(c, rest, !more, out)
	}
	if h := n.children["#"]; h != nil {
		// "#" matches zero words: continue at h with the same key...
		out = t.match(h, key, false, out)
		// ...or one or more words: consume this word and stay on "#".
		k := key
		for {
			_, r, m := strings.Cut(k, ".")
			if !m {
				out = t.match(h, "", true, out)
				break
			}
			out = t.match(h, r, false, out)
			k = r
		}
	}
	return out
}

func dedupe(out []Destination, start int) []Destination {
	if len(out)-start < 2 {
		return out
	}
	kept := out[:start]
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
	return kept
}
