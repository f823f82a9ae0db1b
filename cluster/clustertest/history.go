package clustertest

import (
	"sync"
	"time"
)

// EventKind is what an Event records.
type EventKind uint8

const (
	EvPublish EventKind = iota + 1 // a publisher sent a message (ID, Pub, Seq, Queue, Node)
	EvConfirm                      // the broker acked it (basic.ack to the publisher)
	EvNack                         // the broker nacked it (basic.nack)
	EvReturn                       // the broker returned it unroutable (mandatory); its ack follows
	EvDeliver                      // a consumer received it (Redelivered, Client, Session)
	EvAck                          // the consumer acked it (the ack was written)
	EvMeta                         // a metadata operation finished (Op, Detail = object, OK, Err)
	EvFault                        // a fault started (FaultID, Op = kind, Detail = targets)
	EvHeal                         // that fault healed
	EvClient                       // a client connected or lost its connection (Detail)
)

var kindNames = [...]string{"?", "publish", "confirm", "nack", "return", "deliver", "ack", "meta", "fault", "heal", "client"}

func (k EventKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "?"
}

// Event is one entry of a history. Fields not meaningful for a kind are zero.
type Event struct {
	Time        time.Time
	Kind        EventKind
	Queue       string
	ID          string // message id: "<publisher>-<seq>"
	Pub         string // publisher that sent the message
	Seq         uint64 // the publisher's sequence number of the message
	Client      string // client that recorded the event (publisher, consumer, meta worker)
	Session     int    // the client's connection number (it reconnects after failures)
	Node        int    // node the client was connected to (or a fault's target)
	Redelivered bool
	OK          bool
	Op          string // metadata operation, or fault kind
	Detail      string
	Err         string
	FaultID     int
}

// Recorder collects a history from many goroutines. Events are kept in the order they were
// added, and their times are taken under the recorder's lock, so that order is also time order.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// Add records e, stamping its time.
func (r *Recorder) Add(e Event) {
	r.mu.Lock()
	e.Time = time.Now()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns a copy of the history so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}
