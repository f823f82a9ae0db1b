package wal

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// catchUp tails leader into follower with ReadRaw/ApplyRaw until the follower holds every
// durable record of the leader, and waits for the follower's last batch to be durable.
func catchUp(t *testing.T, leader, follower *Log) {
	t.Helper()
	for follower.LastOffset() < leader.SyncedOffset() {
		recs, err := leader.ReadRaw(follower.LastOffset()+1, 7)
		if err != nil {
			t.Fatalf("ReadRaw(%d): %v", follower.LastOffset()+1, err)
		}
		ch := make(chan error, 1)
		if err := follower.ApplyRaw(recs, func(last uint64, err error) {
			if err == nil && last != recs[len(recs)-1].Offset {
				err = errors.New("done reported the wrong last offset")
			}
			ch <- err
		}); err != nil {
			t.Fatalf("ApplyRaw: %v", err)
		}
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ApplyRaw's done never ran")
		}
	}
}

func sameEntries(t *testing.T, what string, a, b []Entry) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d live entries against %d", what, len(a), len(b))
	}
	for i := range a {
		if a[i].Offset != b[i].Offset || a[i].Delivered != b[i].Delivered || !bytes.Equal(a[i].Payload, b[i].Payload) {
			t.Fatalf("%s: entry %d differs: %d %v %q against %d %v %q", what, i,
				a[i].Offset, a[i].Delivered, a[i].Payload, b[i].Offset, b[i].Delivered, b[i].Payload)
		}
	}
}

// A follower that applies the leader's raw records holds the same live messages at the same
// offsets, with the same delivered marks, sealed payloads included, also after a restart.
func TestApplyRaw_FollowerMirrorsLeader(t *testing.T) {
	base := t.TempDir()
	lcfg := testConfig(t, filepath.Join(base, "leader"))
	lcfg.CipherFor = cipherForKey(3, nil, nil)
	lcfg.SegmentSize = 4096 // several segments, and reclamation on the way
	fcfg := testConfig(t, filepath.Join(base, "follower"))
	fcfg.CipherFor = cipherForKey(3, nil, nil)
	fcfg.SegmentSize = 4096
	leader := openLog(t, openManager(t, lcfg), "q")
	fm := openManager(t, fcfg)
	follower := openLog(t, fm, "q")

	var offs []uint64
	for i := 0; i < 120; i++ {
		offs = append(offs, appendWait(t, leader, payloadFor(i)))
	}
	for i, o := range offs {
		switch {
		case i%3 == 0:
			leader.Retire(o)
		case i%5 == 0:
			leader.MarkDelivered(o)
		}
	}
	syncLog(t, leader)
	catchUp(t, leader, follower)
	if follower.LastOffset() != leader.LastOffset() {
		t.Fatalf("follower at %d, leader at %d", follower.LastOffset(), leader.LastOffset())
	}
	sameEntries(t, "after catching up", replayAll(t, leader), replayAll(t, follower))

	// The leader goes on (new messages, retirements of old and new); the follower tails again.
	for i := 120; i < 200; i++ {
		offs = append(offs, appendWait(t, leader, payloadFor(i)))
	}
	for i, o := range offs {
		if i%3 != 0 && i%2 == 0 {
			leader.Retire(o)
		}
	}
	syncLog(t, leader)
	catchUp(t, leader, follower)
	want := replayAll(t, leader)
	sameEntries(t, "after tailing", want, replayAll(t, follower))
	if len(want) == 0 {
		t.Fatal("nothing live: the test would prove nothing")
	}

	// Durable: a restarted follower holds the same.
	if err := fm.Close(); err != nil {
		t.Fatal(err)
	}
	follower = openLog(t, openManager(t, fcfg), "q")
	sameEntries(t, "after the follower restarted", want, replayAll(t, follower))
}

// Records that do not continue the log, or that do not decode, are refused and change nothing.
func TestApplyRaw_RefusesGapsAndBadRecords(t *testing.T) {
	base := t.TempDir()
	leader := openLog(t, openManager(t, testConfig(t, filepath.Join(base, "leader"))), "q")
	follower := openLog(t, openManager(t, testConfig(t, filepath.Join(base, "follower"))), "q")
	for i := 0; i < 3; i++ {
		appendWait(t, leader, payloadFor(i))
	}
	recs, err := leader.ReadRaw(2, 10) // starts at 2: the follower is empty
	if err != nil || len(recs) != 2 {
		t.Fatalf("ReadRaw: %v %v", recs, err)
	}
	if err := follower.ApplyRaw(recs, nil); !errors.Is(err, ErrGap) {
		t.Fatalf("a gap: %v, want ErrGap", err)
	}
	bad := [][]Record{
		{{Offset: 1, Kind: 9, Body: []byte("x")}},
		{{Offset: 1, Kind: KindRetire, Body: []byte{2}}},                                 // retires offset 2 at offset 1
		{{Offset: 1, Kind: KindDelivered, Body: []byte{1}}},                              // marks offset 1 at offset 1 (only a retire record may name its own offset: a void record)
		{{Offset: 1, Kind: KindData}, {Offset: 2, Kind: KindRetire, Body: []byte{1, 1}}}, // names offsets 1 and 2 at offset 2: not a void record
		{{Offset: 1, Kind: KindDelivered, Body: []byte{}}},                               // empty offset list
		{{Offset: 1, Kind: KindData}, {Offset: 3, Kind: KindData}},                       // a hole inside the batch
	}
	for i, b := range bad {
		if err := follower.ApplyRaw(b, nil); err == nil {
			t.Fatalf("bad batch %d was applied", i)
		}
	}
	if follower.LastOffset() != 0 || len(replayAll(t, follower)) != 0 {
		t.Fatalf("refused batches changed the log: last %d", follower.LastOffset())
	}
	catchUp(t, leader, follower)
	sameEntries(t, "after refusals", replayAll(t, leader), replayAll(t, follower))
}

// A follower that joins after the leader reclaimed the head of its log starts at the leader's
// first offset (LogAt), catches up, and keeps its place across a restart.
func TestLogAt_FollowerJoinsLate(t *testing.T) {
	base := t.TempDir()
	lcfg := testConfig(t, filepath.Join(base, "leader"))
	lcfg.SegmentSize = 1024
	leader := openLog(t, openManager(t, lcfg), "q")
	var offs []uint64
	for i := 0; i < 200; i++ {
		offs = append(offs, appendWait(t, leader, payloadFor(i)))
	}
	leader.Retire(offs[:150]...)
	for i := 0; i < 20; i++ { // more traffic lets reclamation run
		leader.Retire(appendWait(t, leader, payloadFor(i)))
	}
	syncLog(t, leader)
	first := leader.FirstOffset()
	if first <= 1 {
		t.Fatalf("leader's first offset %d: nothing was reclaimed, the test would prove nothing", first)
	}
	if _, err := leader.ReadRaw(1, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadRaw(1) on the reclaimed leader: %v", err)
	}

	fcfg := testConfig(t, filepath.Join(base, "follower"))
	fcfg.NoSync = false // the created folder and segment are synced
	fm := openManager(t, fcfg)
	follower, err := fm.LogAt("q", first)
	if err != nil {
		t.Fatal(err)
	}
	if follower.FirstOffset() != first || follower.LastOffset() != first-1 {
		t.Fatalf("new follower spans %d..%d, want to start at %d", follower.FirstOffset(), follower.LastOffset(), first)
	}
	catchUp(t, leader, follower)
	want := replayAll(t, leader)
	if len(want) != 50 {
		t.Fatalf("leader holds %d live messages, want 50", len(want))
	}
	sameEntries(t, "late follower", want, replayAll(t, follower))

	if err := fm.Close(); err != nil {
		t.Fatal(err)
	}
	fm = openManager(t, fcfg)
	follower, err = fm.LogAt("q", first) // where it already is: fine
	if err != nil {
		t.Fatal(err)
	}
	sameEntries(t, "late follower after a restart", want, replayAll(t, follower))
	if _, err := fm.LogAt("q", follower.LastOffset()+5); !errors.Is(err, ErrExists) {
		t.Fatalf("LogAt past the follower's end: %v, want ErrExists", err)
	}
	if l, err := fm.LogAt("fresh", 1); err != nil || l.LastOffset() != 0 {
		t.Fatalf("LogAt(fresh, 1): %v", err)
	}
}
