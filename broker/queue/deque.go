package queue

import "sort"

// deque is the ready list: entries in offset order, a slice with a moving head so that
// pops from the front and pushes to the back are O(1) and requeued entries (usually the
// oldest) go back in at or near the front cheaply.
type deque struct {
	buf  []Entry
	head int
}

func (d *deque) Len() int { return len(d.buf) - d.head }

func (d *deque) PushBack(e Entry) { d.buf = append(d.buf, e) }

func (d *deque) Front() *Entry { return &d.buf[d.head] }

func (d *deque) At(i int) *Entry { return &d.buf[d.head+i] }

func (d *deque) PopFront() Entry {
	e := d.buf[d.head]
	d.buf[d.head] = Entry{}
	d.head++
	if d.head == len(d.buf) {
		d.buf = d.buf[:0]
		d.head = 0
	} else if d.head >= 1024 && d.head*2 >= len(d.buf) {
		n := copy(d.buf, d.buf[d.head:])
		clear(d.buf[n:])
		d.buf = d.buf[:n]
		d.head = 0
	}
	return e
}

// PopBack removes the newest entry.
func (d *deque) PopBack() Entry {
	i := len(d.buf) - 1
	e := d.buf[i]
	d.buf[i] = Entry{}
	d.buf = d.buf[:i]
	if d.head == len(d.buf) {
		d.buf = d.buf[:0]
		d.head = 0
	}
	return e
}

// Insert puts e at its place by offset.
func (d *deque) Insert(e Entry) {
	live := d.buf[d.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].Offset > e.Offset })
	if i == 0 && d.head > 0 {
		d.head--
		d.buf[d.head] = e
		return
	}
	d.buf = append(d.buf, Entry{})
	pos := d.head + i
	copy(d.buf[pos+1:], d.buf[pos:])
	d.buf[pos] = e
}

// RemoveAt removes the entry at live index i.
func (d *deque) RemoveAt(i int) Entry {
	pos := d.head + i
	e := d.buf[pos]
	copy(d.buf[pos:], d.buf[pos+1:])
	d.buf[len(d.buf)-1] = Entry{}
	d.buf = d.buf[:len(d.buf)-1]
	return e
}

// Clear drops every entry and returns how many there were.
func (d *deque) Clear() int {
	n := d.Len()
	clear(d.buf)
	d.buf = d.buf[:0]
	d.head = 0
	return n
}
