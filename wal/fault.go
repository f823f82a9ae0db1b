package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	tidwal "github.com/tidwall/wal"
)

// Write faults: a write or fsync that fails with an error that passes (transient) does not put
// the log out of service. The log cuts its files back to the acknowledged records, fails the
// appends of the batch, puts the batch back in front of the gathering one and writes it again
// after a pause (retryFirst, doubling up to retryMax) until a write succeeds. After ENOSPC, an
// attempt waits until the device has room for what the log holds (checked every probeEvery):
// a full device costs no failed writes, a log with much to write leaves the room to those with
// little (retirements and delivery hints), and the log writes within probeEvery of space
// coming back. See "Write faults" in the package documentation.

// Pauses of a log in a write fault: between attempts, and between looks at the free space.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = time.Second
	probeEvery = 50 * time.Millisecond
)

// probeSlack is the room beyond the bytes to write that an attempt after ENOSPC waits for: a
// new segment file, page rounding, the records gathered meanwhile.
const probeSlack = 64 << 10

// pageSize is the unit in which the page cache writes a file back.
const pageSize = 4096

// transient reports whether a failed write or fsync leaves the log usable once its cause is
// gone: a full device (ENOSPC), an exhausted quota (EDQUOT), an I/O error (EIO). After EIO the
// page cache may hold bytes the device never took, but the log relies on none of them: what was
// acknowledged was fsynced before, everything after it is cut off, the last page of what stays
// is written again and fsynced, and the tail is checked (cut) before the log writes again.
func transient(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EIO)
}

// segMark records the segment files before a commit's write: how many, the tail's size and
// the total.
type segMark struct {
	n    int
	tail int64
	size int64
}

// hook runs the fault-injection hooks at a point of the commit: "write" (before the batch is
// written; Config.FailWrite and the test hook), "written" (after), "sync" (before the fsync),
// "cut" (before the files are cut back), "cut-removed" (newer segment files removed),
// "cut-truncated" (the tail cut and synced), "cut-done" (tidwall reopened) and "reclaim"
// (before segments are reclaimed). An error fails the operation at that point.
func (l *Log) hook(point string) error {
	if point == "write" {
		if f := l.m.cfg.FailWrite; f != nil {
			if err := f(l.name); err != nil {
				return err
			}
		}
	}
	if h := l.m.cfg.testHook; h != nil {
		return h(l, point)
	}
	return nil
}

// writeFailed handles a failed write or sync of the current batch (op says which), or a
// failed cut before it. An error that passes leaves the log in service: the files go back to
// the acknowledged records (or are cut back before the next write, if that fails now), and
// finish puts the batch back to be written again. Any other error puts the log out of service.
func (l *Log) writeFailed(op string, err error) error {
	werr := fmt.Errorf("wal: log %q: %s: %w", l.name, op, err)
	if !transient(err) {
		return l.fail(werr)
	}
	if !l.cutDue {
		l.mu.Lock()
		l.written = l.wp.first - 1 // reads of the batch's records go to memory again
		l.mu.Unlock()
		l.segs = l.segs[:l.pre.n]
		l.segs[len(l.segs)-1].size = l.pre.tail
		l.size.Store(l.pre.size)
		l.cutDue = true
		if cerr := l.cut(); cerr != nil {
			if !transient(cerr) {
				return l.fail(fmt.Errorf("wal: log %q: cut back after a failed %s: %w", l.name, op, cerr))
			}
			l.log.Debug().Err(cerr).Msg("could not cut back the failed write yet")
		}
	}
	l.wfault = true
	return werr
}

// cut brings the log's files back to the acknowledged records, which l.segs describes: it
// removes the segment files a failed commit created, cuts the tail segment to its size, writes
// its last page again and syncs all that, checks the tail's records, and opens tidwall/wal
// again on the result (its state in memory is not to be trusted after a failed write).
// Removal comes first, so that a crash in between finds a tail with extra records (the torn
// tail of an unacknowledged write) and never a short segment with another behind it.
func (l *Log) cut() error {
	if err := l.hook("cut"); err != nil {
		return err
	}
	sync := !l.m.cfg.NoSync
	tail := l.segs[len(l.segs)-1]
	files, _, err := listSegments(l.dir, false)
	if err != nil {
		return err
	}
	removed := false
	for _, f := range files {
		if f.start > tail.start {
			if err := os.Remove(filepath.Join(l.dir, segmentName(f.start))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			removed = true
		}
	}
	if removed && sync {
		if err := syncDir(l.dir); err != nil {
			return err
		}
	}
	if err := l.hook("cut-removed"); err != nil {
		return err
	}
	path := filepath.Join(l.dir, segmentName(tail.start))
	if err := cutFile(path, tail.size, sync); err != nil {
		return err
	}
	if err := l.hook("cut-truncated"); err != nil {
		return err
	}
	last := l.written
	buf, err := readFileInto(path, nil)
	if err != nil {
		return err
	}
	want := 0
	if last >= tail.start {
		want = int(last - tail.start + 1)
	}
	if n, pos, why := scanSegment(buf, nil); why != "" || n != want || pos != len(buf) || int64(len(buf)) != tail.size {
		return &CorruptError{Log: l.name, Offset: tail.start + uint64(n), Reason: fmt.Sprintf(
			"segment %s cut back to %d bytes holds %d valid records in %d bytes (%s), want %d",
			segmentName(tail.start), tail.size, n, pos, why, want)}
	}
	tw, err := tidwal.Open(l.dir, l.m.twOptions())
	if err != nil {
		if errors.Is(err, tidwal.ErrCorrupt) {
			return &CorruptError{Log: l.name, Offset: last + 1, Reason: "reopen after a failed write: " + err.Error()}
		}
		return err
	}
	f, _ := tw.FirstIndex()
	n, _ := tw.LastIndex()
	if f != l.segs[0].start || n != last {
		_ = tw.Close()
		return &CorruptError{Log: l.name, Offset: n, Reason: fmt.Sprintf(
			"reopen after a failed write: tidwall holds %d to %d, want %d to %d", f, n, l.segs[0].start, last)}
	}
	l.readMu.Lock()
	old := l.tw
	l.tw = tw
	l.readMu.Unlock()
	if err := old.Close(); err != nil && !errors.Is(err, tidwal.ErrClosed) {
		// Its Close syncs first; a sync error is reported once, so this one closes.
		if err := old.Close(); err != nil && !errors.Is(err, tidwal.ErrClosed) {
			l.log.Warn().Err(err).Msg("could not close the segment file of a failed write")
		}
	}
	l.cutDue = false
	return l.hook("cut-done")
}

// cutFile truncates a segment file to size and writes its last partial page again from what
// it holds, so that the sync that follows puts that page on the device whatever a failed
// write-back of it left there.
func cutFile(path string, size int64, sync bool) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if start := size &^ (pageSize - 1); err == nil && start < size {
		b := make([]byte, size-start)
		if _, err = f.ReadAt(b, start); err == nil {
			_, err = f.WriteAt(b, start)
		}
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// faulted runs on the commit goroutine after a commit whose write failed with an error that
// passes (finish): the batch goes back in front of the gathering one, the appends it held are
// told, and the log waits for the retry timer.
func (l *Log) faulted(p *pending, err error) {
	l.mu.Lock()
	dones, waiters := l.requeueLocked(p)
	l.faultErr = err
	if !l.closeReq {
		l.holdoff = true
	}
	l.mu.Unlock()
	l.faultFails++
	if l.faultFails == 1 { // OnFault first: the node's disk alarm is on before the first nack
		l.faultSince = time.Now()
		l.m.faults.Add(1)
		l.log.Warn().Err(err).Int("appends_failed", len(dones)).
			Msg("write failed: the log cut back to its acknowledged records, fails appends and retries until a write succeeds")
		if h := l.m.cfg.OnFault; h != nil {
			h(l.name, err)
		}
	} else {
		l.log.Debug().Err(err).Int("appends_failed", len(dones)).Int("attempt", l.faultFails).Msg("write failed again")
	}
	for _, d := range dones {
		d.fn(d.off, err)
	}
	for _, ch := range waiters {
		ch <- err
	}
	clear(p.dones)
	p.dones = p.dones[:0]
	clear(p.waiters)
	p.waiters = p.waiters[:0]
	l.wp = nil
	if l.closeNow {
		return
	}
	first, most := retryFirst, retryMax
	if d := l.m.cfg.testRetry; d > 0 {
		first, most = d, 4*d
	}
	if l.backoff == 0 {
		l.backoff = first
	} else {
		l.backoff = min(2*l.backoff, most)
	}
	l.armRetry(l.backoff)
}

// armRetry starts the retry timer. Only one party arms it at a time: faulted after a failed
// attempt, then the timer's own retryNow while the device is still full.
func (l *Log) armRetry(d time.Duration) {
	l.mu.Lock()
	if l.retry == nil {
		l.retry = time.AfterFunc(d, l.retryNow)
	} else {
		l.retry.Reset(d)
	}
	l.mu.Unlock()
}

// requeueLocked puts the failed batch p back in front of the gathering one, at the same offsets:
// its records are written again by the next commit, except each data record whose append has a
// done callback, which is told of the failure (it returns those callbacks and the Sync waiters
// of p to be called without l.mu): such a record becomes a void record, a retire record naming
// its own offset, and is no longer live. So a failed append never comes back, not even after a
// crash, offsets stay dense, and records nobody was told about (appends without done,
// retirements, delivery hints) are not lost. A log written by ApplyRaw mirrors another one: its
// records all go back unchanged.
func (l *Log) requeueLocked(p *pending) ([]doneEntry, []chan error) {
	c := l.cur
	if c.first != p.first+uint64(len(p.ends)) {
		panic("wal: requeue: batches not contiguous")
	}
	buf := make([]byte, 0, len(p.buf)+len(c.buf)+(headerSize+binary.MaxVarintLen64)*len(p.dones))
	ends := make([]int, 0, len(p.ends)+len(c.ends))
	prev, j := 0, 0
	voided := false
	for i, end := range p.ends {
		off := p.first + uint64(i)
		rec := p.buf[prev:end]
		prev = end
		if !l.raw && j < len(p.dones) && p.dones[j].off == off {
			for j < len(p.dones) && p.dones[j].off == off {
				j++
			}
			var start int
			buf, start = beginRecord(buf, KindRetire)
			buf = binary.AppendUvarint(buf, off)
			finishRecord(buf, start)
			l.live.retire(off)
			voided = true
		} else {
			buf = append(buf, rec...)
		}
		ends = append(ends, len(buf))
	}
	base := len(buf)
	buf = append(buf, c.buf...)
	for _, e := range c.ends {
		ends = append(ends, base+e)
	}
	c.first, c.buf, c.ends = p.first, buf, ends
	if voided {
		l.live.compact(l.next)
	}
	p.buf, p.ends = p.buf[:0], p.ends[:0]
	return p.dones, p.waiters
}

// retryNow runs on the retry timer: the log may write again, unless the fault is a full
// device that still has no room for what the log holds.
func (l *Log) retryNow() {
	l.mu.Lock()
	need := int64(len(l.cur.buf)) + probeSlack
	full := !l.closeReq && errors.Is(l.faultErr, syscall.ENOSPC)
	l.mu.Unlock()
	if full {
		look := freeSpace
		if f := l.m.cfg.testFree; f != nil {
			look = f
		}
		if free, ok := look(l.dir); ok && free < need {
			d := probeEvery
			if t := l.m.cfg.testRetry; t > 0 {
				d = t
			}
			l.armRetry(d)
			return
		}
	}
	l.mu.Lock()
	l.holdoff = false
	q := l.markQueuedLocked()
	l.mu.Unlock()
	if q {
		l.m.enqueue(l)
	}
}

// recovered runs on the commit goroutine after the first successful write of a log in a write
// fault.
func (l *Log) recovered() {
	l.mu.Lock()
	l.faultErr = nil
	l.mu.Unlock()
	l.log.Info().Dur("after", time.Since(l.faultSince)).Int("failed_commits", l.faultFails).Msg("writes work again")
	l.faultFails, l.backoff = 0, 0
	l.m.faults.Add(-1)
	if h := l.m.cfg.OnFault; h != nil {
		h(l.name, nil)
	}
}

// endFault ends a write fault when the log closes (finishClose).
func (l *Log) endFault() {
	l.mu.Lock()
	if l.retry != nil {
		l.retry.Stop()
	}
	l.mu.Unlock()
	if l.faultFails == 0 {
		return
	}
	l.faultFails = 0
	l.m.faults.Add(-1)
	if h := l.m.cfg.OnFault; h != nil {
		h(l.name, nil)
	}
}

// Fault returns the error of the log's current write fault: its last write failed with an error
// that passes (a full device, an exhausted quota, an I/O error) and it retries. It returns nil
// when writes work. Unlike Err, a fault does not put the log out of service.
func (l *Log) Fault() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.faultErr
}
