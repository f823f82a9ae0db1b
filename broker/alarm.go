package broker

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Resource alarms, as RabbitMQ's: when the node's memory use is above the high watermark or
// the data folder's free disk space is below the limit, connections that publish are blocked
// (connection.blocked, then no more frames are read from them) until the alarm clears
// (connection.unblocked). Consumers keep draining. Checked once a second by one goroutine, and
// at once when the storage's writes start or stop failing for want of space (WriteFaults).

// WriteFaults is implemented by a Storage that can tell when its writes fail for want of disk
// space (cmd/warren's, from the write faults of its logs). While it reports one, the disk alarm
// is on whatever the free space looks like (a quota, the inodes, a device filling faster than the
// check sees), and a fault that starts or ends checks the alarms at once instead of at the next
// tick, so that publishers are blocked before they pile up failed writes.
type WriteFaults interface {
	// WriteFault reports whether writes are failing for want of space.
	WriteFault() bool
	// NotifyWriteFault sets fn, to be called whenever WriteFault may have changed, before the
	// publishers whose writes failed (or worked again) are told. fn takes a lock and reads the
	// free space, briefly.
	NotifyWriteFault(fn func())
}

// alarmState is the current alarm: nil when there is none.
type alarmState struct {
	reason  string        // "memory", "disk" or "memory & disk"
	cleared chan struct{} // closed when this alarm clears
}

type alarms struct {
	cur atomic.Pointer[alarmState]

	mu        sync.Mutex
	memLimit  int64 // bytes of RSS; 0: off
	diskLimit int64 // bytes free; 0: off
	dir       string
	memOn     bool
	diskOn    bool
	fault     func() bool // the storage's WriteFault (nil: none)
}

// Alarm returns the reason of the active alarm ("" when none) and a channel closed when it
// clears. It is cheap: publishers call it on every basic.publish.
func (a *alarms) Alarm() (string, <-chan struct{}) {
	if st := a.cur.Load(); st != nil {
		return st.reason, st.cleared
	}
	return "", nil
}

// SetAlarmLimits changes the memory high watermark (bytes of RSS) and the free disk limit
// (bytes); 0 turns a check off. The change takes effect at once.
func (s *Server) SetAlarmLimits(memory, diskFree int64) {
	s.alarm.mu.Lock()
	s.alarm.memLimit, s.alarm.diskLimit = memory, diskFree
	s.alarm.mu.Unlock()
	s.checkAlarms()
}

// Alarms reports which alarms are active.
func (s *Server) Alarms() (memory, disk bool) {
	s.alarm.mu.Lock()
	defer s.alarm.mu.Unlock()
	return s.alarm.memOn, s.alarm.diskOn
}

func (s *Server) checkAlarms() {
	a := &s.alarm
	a.mu.Lock()
	defer a.mu.Unlock()
	// Large bodies being received count before they are: a handful of clients each sending a
	// maximum-size message would otherwise pass the check together.
	memOn := a.memLimit > 0 && processRSS()+s.budget.Inflight() > a.memLimit
	writeFault := a.fault != nil && a.fault()
	diskOn := writeFault || (a.diskLimit > 0 && a.dir != "" && diskFree(a.dir) < a.diskLimit)
	if memOn == a.memOn && diskOn == a.diskOn {
		return
	}
	if memOn != a.memOn {
		s.log.Warn().Bool("active", memOn).Int64("limit", a.memLimit).Msg("memory alarm")
	}
	if diskOn != a.diskOn {
		s.log.Warn().Bool("active", diskOn).Int64("limit", a.diskLimit).Bool("write_failed", writeFault).Msg("disk alarm")
	}
	a.memOn, a.diskOn = memOn, diskOn
	old := a.cur.Load()
	switch {
	case memOn && diskOn:
		a.cur.Store(&alarmState{reason: "memory & disk", cleared: make(chan struct{})})
	case memOn:
		a.cur.Store(&alarmState{reason: "memory", cleared: make(chan struct{})})
	case diskOn:
		a.cur.Store(&alarmState{reason: "disk", cleared: make(chan struct{})})
	default:
		a.cur.Store(nil)
	}
	if old != nil {
		close(old.cleared) // waiters re-check: a changed alarm blocks them again
	}
}

// watchWriteFaults makes the storage's write faults part of the disk alarm (see WriteFaults).
func (s *Server) watchWriteFaults(st Storage) {
	if wf, ok := st.(WriteFaults); ok {
		s.alarm.fault = wf.WriteFault
		wf.NotifyWriteFault(s.checkAlarms)
	}
}

func (s *Server) alarmLoop(stop <-chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.checkAlarms()
			s.returnMemory(now)
		}
	}
}

// Returning memory to the OS: the Go runtime keeps freed heap for reuse and gives it back
// slowly, and it collects garbage only as the heap grows, so after large messages are gone
// (delivered and settled, dropped, deleted, moved to the spill) a quiet node would keep their
// memory for a long time. Once queues let go of freeOSMemoryAfter bytes of large messages,
// the alarm loop runs debug.FreeOSMemory (a collection that returns the free memory), at most
// once per freeOSMemoryEvery.
const (
	freeOSMemoryAfter = 64 << 20
	freeOSMemoryEvery = 2 * time.Second
)

func (s *Server) returnMemory(now time.Time) {
	if s.budget.LargeFreed() < freeOSMemoryAfter || now.Sub(s.lastFreeOS) < freeOSMemoryEvery {
		return
	}
	s.budget.TakeLargeFreed()
	s.lastFreeOS = now
	debug.FreeOSMemory()
}

// processRSS returns this process's resident memory in bytes (0 if unknown).
func processRSS() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// diskFree returns the bytes available to us on dir's filesystem (max int64 if unknown).
func diskFree(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 1<<63 - 1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// AlarmLimits returns the memory high watermark (bytes of RSS) and the free disk limit in
// force (0: that check is off).
func (s *Server) AlarmLimits() (memory, diskFree int64) {
	s.alarm.mu.Lock()
	defer s.alarm.mu.Unlock()
	return s.alarm.memLimit, s.alarm.diskLimit
}
