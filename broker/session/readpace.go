package session

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Read pacing: a client that streams small publishes (one write(2) per message, as every
// AMQP client does) would wake the broker's reader once per message or two. Each wakeup costs
// the broker a park and unpark of its reader and the Go runtime's sysmon, and costs the
// client a cross-CPU wakeup inside its own write: together that is most of the CPU a small
// publish costs. When a connection streams like that, the pacer raises the socket's receive
// low-water mark (SO_RCVLOWAT), so the kernel signals the socket readable only once a batch
// of bytes is queued, and sets a short read deadline so that bytes left below the mark are
// read anyway. A deadline that finds bytes below the mark means the mark is above what the
// sender has in flight (its congestion window waits for our acknowledgements, which the
// kernel holds back until we read): the mark drops to just under what arrived, and grows
// again slowly while reads reach it. Deadlines that find nothing mean the stream paused:
// pacing stops, and waits for a cool-down that doubles each time, so a request/response
// client (a small confirm window, an RPC) loses at most a few short pauses.
//
// Only the connection's reader goroutine uses the pacer.

const (
	// A window of paceWindowReads reads decides whether the connection streams: more than
	// one read per paceMaxGap on average, averaging under paceSmallRead bytes.
	paceWindowReads = 64
	paceMaxGap      = 100 * time.Microsecond
	paceSmallRead   = 2048
	// The mark covers about paceBatch of the measured byte rate, within [paceMinMark, paceMaxMark].
	paceBatch   = 200 * time.Microsecond
	paceMinMark = 256
	paceMaxMark = 16384
	// paceDeadline bounds how long bytes below the mark wait (the runtime's poller rounds
	// short sleeps up to a millisecond when the process is idle).
	paceDeadline   = 400 * time.Microsecond
	paceMaxShorts  = 3  // deadlines at the lowest mark before pacing stops
	paceGrowReads  = 64 // paced reads reaching the mark before it grows by an eighth
	paceMaxEmpties = 2  // deadlines in a row with nothing to read before pacing stops
	paceCoolMin    = 10 * time.Millisecond
	paceCoolMax    = 2 * time.Second
	paceCoolResets = time.Second // a stream paced this long without a pause resets the cool-down
)

type readPacer struct {
	nc  net.Conn
	raw syscall.RawConn // nil: the connection cannot be paced (TLS, pipes)

	mark     int // current SO_RCVLOWAT; <= 1 means not pacing
	off      bool
	winStart time.Time
	winReads int
	winBytes int
	coolTill time.Time
	cool     time.Duration
	pacedAt  time.Time
	shorts   int // deadlines that found bytes below the mark, since a read reached the mark
	empties  int // deadlines in a row that found nothing
	good     int // paced reads that reached the mark since the mark last changed

	// Counters for tests and the profile notes.
	engaged, paused int

	// sendTimeout bounds how long sysWrite waits for a socket that takes nothing (0: no
	// bound). Only the goroutine that writes (under the connection's wmu) reads it after
	// setSendTimeout.
	sendTimeout time.Duration
	iov         []syscall.Iovec // sysWritev's scratch (the writer's)

	inner *readPacer // a TLS connection's: the pacer of the TCP connection below it
}

// PacedConn wraps a TCP connection that will carry TLS, so that the raw socket I/O and the
// read pacing apply below the TLS layer too (other connections are returned as they are).
// The tls.Conn reads and writes through it; Serve finds it again through tls.Conn.NetConn.
func PacedConn(nc net.Conn) net.Conn {
	p := newReadPacer(nc)
	if p.raw == nil {
		return nc
	}
	return &pacedConn{Conn: nc, p: p}
}

// pacedConn is a TCP connection read through its pacer and written with raw writes.
type pacedConn struct {
	net.Conn
	p *readPacer
}

func (c *pacedConn) Read(b []byte) (int, error)  { return c.p.read(b) }
func (c *pacedConn) Write(b []byte) (int, error) { return c.p.sysWrite(b) }

func newReadPacer(nc net.Conn) *readPacer {
	p := &readPacer{nc: nc, mark: 1, cool: paceCoolMin}
	if tc, ok := nc.(*tls.Conn); ok {
		// TLS reads go through the tls.Conn; the pacing happens below it (PacedConn), and
		// this pacer only passes stop() on.
		if pc, ok := tc.NetConn().(*pacedConn); ok {
			p.inner = pc.p
		}
		return p
	}
	if tc, ok := nc.(*net.TCPConn); ok && paceSupported {
		if rc, err := tc.SyscallConn(); err == nil {
			p.raw = rc
		}
	}
	return p
}

// read reads into b, pacing as described above.
func (p *readPacer) read(b []byte) (int, error) {
	if p.raw == nil {
		return p.nc.Read(b)
	}
	if p.off {
		return p.sysRead(b)
	}
	for p.mark > 1 {
		p.nc.SetReadDeadline(time.Now().Add(paceDeadline))
		n, err := p.sysRead(b)
		if err == nil || n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			if n >= p.mark {
				p.shorts, p.empties = 0, 0
				// Reads reach the mark: probe a little higher now and then.
				if p.good++; p.good >= paceGrowReads && p.mark < paceMaxMark {
					p.good = 0
					p.setMark(min(paceMaxMark, p.mark+p.mark/8))
				}
			}
			return n, err
		}
		// The deadline fired. Read what is there without waiting (a non-blocking read ignores
		// the mark; and reading lets the kernel acknowledge, which a sender held back by its
		// congestion window waits for).
		p.nc.SetReadDeadline(time.Time{})
		n = p.tryRead(b)
		switch {
		case n == 0: // nothing for a whole deadline: twice in a row, the stream has paused
			p.empties++
			if p.empties >= paceMaxEmpties {
				p.pause(time.Now())
			}
			continue
		case n < p.mark:
			// The mark is above what the sender has in flight: a sender whose congestion
			// window is full waits for our acknowledgements, which the kernel holds back
			// until we read. What arrived is about that window: set the mark just under it.
			// At the lowest mark, stop after a few such rounds.
			p.shorts++
			p.good = 0
			if p.mark > paceMinMark {
				p.setMark(max(paceMinMark, n-n/8))
			} else if p.shorts >= paceMaxShorts {
				p.pause(time.Now())
			}
		}
		// n >= mark: the runtime's poller woke us late; nothing to change.
		return n, nil
	}
	n, err := p.sysRead(b)
	if n > 0 {
		p.observe(n)
	}
	return n, err
}

// observe counts an unpaced read and starts pacing when the window shows a stream of small reads.
func (p *readPacer) observe(n int) {
	if p.winReads == 0 {
		p.winStart = time.Now()
	}
	p.winReads++
	p.winBytes += n
	if p.winReads < paceWindowReads {
		return
	}
	now := time.Now()
	elapsed := now.Sub(p.winStart)
	bytes := p.winBytes
	p.winReads, p.winBytes = 0, 0
	if elapsed <= 0 || elapsed > paceWindowReads*paceMaxGap || bytes > paceWindowReads*paceSmallRead || now.Before(p.coolTill) {
		return
	}
	mark := int(int64(bytes) * int64(paceBatch) / int64(elapsed))
	mark = max(paceMinMark, min(mark, paceMaxMark))
	if p.setMark(mark) {
		p.engaged++
		p.pacedAt = now
	}
}

// pause ends pacing after the stream paused, and sets the cool-down before pacing again.
func (p *readPacer) pause(now time.Time) {
	p.paused++
	p.stopMark()
	if now.Sub(p.pacedAt) > paceCoolResets {
		p.cool = paceCoolMin // it paced well for a long while: this pause is news
	}
	p.coolTill = now.Add(p.cool)
	p.cool = min(2*p.cool, paceCoolMax)
}

// stop ends pacing for good (the connection is closing and sets its own deadlines).
func (p *readPacer) stop() {
	if p.inner != nil {
		p.inner.stop()
	}
	if p.raw != nil && !p.off {
		p.stopMark()
	}
	p.off = true
}

func (p *readPacer) stopMark() {
	if p.mark > 1 {
		p.setMark(1)
	}
	p.shorts, p.empties, p.good = 0, 0, 0
	p.nc.SetReadDeadline(time.Time{})
}

func (p *readPacer) setMark(v int) bool {
	var serr error
	err := p.raw.Control(func(fd uintptr) { serr = setRcvLowat(int(fd), v) })
	if err != nil || serr != nil {
		p.off = true // cannot pace this socket (it is closing): plain reads from here on
		return false
	}
	p.mark = v
	return true
}

// sysRead is conn.Read done with a raw read(2) on the non-blocking socket: it skips the
// runtime's syscall bookkeeping, which on every read from an idle process wakes the runtime's
// monitor thread (sysmon) only for it to go back to sleep; on a stream of small reads that
// wakeup cost a fifth of the broker's CPU. A non-blocking read cannot block, so nothing is lost
// by not telling the scheduler. Waiting, deadlines and closing stay the runtime poller's.
func (p *readPacer) sysRead(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := p.raw.Read(func(fd uintptr) bool {
		n, errno = rawRead(fd, b)
		return errno != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// sysWrite is conn.Write done with raw write(2)s on the non-blocking socket, for the same
// reason as sysRead. It writes at most rawWriteChunk bytes per call, so that the processor is
// never held long (a loopback write runs the receiver's network stack inside the call).
// A socket that takes no byte for the pacer's send timeout fails the write with
// errSendTimeout (see writeRaw).
func (p *readPacer) sysWrite(b []byte) (int, error) {
	return p.sysWriteTimeout(b, p.sendTimeout)
}

// sysWriteTimeout is sysWrite with the given send timeout (<= 0: none).
func (p *readPacer) sysWriteTimeout(b []byte, timeout time.Duration) (int, error) {
	return p.writeRaw(len(b), timeout, func(fd uintptr, done int) (int, syscall.Errno) {
		return rawWrite(fd, b[done:min(len(b), done+rawWriteChunk)])
	})
}

// sysWritev writes segs one after the other with writev(2) (at most maxIovecs pieces and
// about rawWriteChunk bytes per call), as sysWrite writes one buffer.
func (p *readPacer) sysWritev(segs [][]byte) (int, error) {
	total := 0
	for _, s := range segs {
		total += len(s)
	}
	seg, off, pos := 0, 0, 0 // where done is in segs
	return p.writeRaw(total, p.sendTimeout, func(fd uintptr, done int) (int, syscall.Errno) {
		for pos < done {
			adv := min(done-pos, len(segs[seg])-off)
			off += adv
			pos += adv
			if off == len(segs[seg]) {
				seg, off = seg+1, 0
			}
		}
		iov := p.iov[:0]
		bytes := 0
		for i := seg; i < len(segs) && len(iov) < maxIovecs && bytes < rawWriteChunk; i++ {
			b := segs[i]
			if i == seg {
				b = b[off:]
			}
			if len(b) == 0 {
				continue
			}
			b = b[:min(len(b), rawWriteChunk-bytes)]
			iov = append(iov, syscall.Iovec{Base: &b[0]})
			iov[len(iov)-1].SetLen(len(b))
			bytes += len(b)
		}
		n, e := rawWritev(fd, iov)
		clear(iov)
		p.iov = iov[:0]
		return n, e
	})
}

// maxIovecs is Linux's IOV_MAX.
const maxIovecs = 1024

// writeRaw runs step (one raw write of the stream's bytes from done on) until total bytes
// went out. A socket that takes no byte for timeout fails it with errSendTimeout. The
// deadline is set only once the socket is full (EAGAIN) and moved on whenever bytes went out
// since, so a write that does not wait costs no timer.
func (p *readPacer) writeRaw(total int, timeout time.Duration, step func(fd uintptr, done int) (int, syscall.Errno)) (int, error) {
	done, armedAt := 0, -1
	var errno syscall.Errno
	err := p.raw.Write(func(fd uintptr) bool {
		for done < total {
			n, e := step(fd, done)
			if e == syscall.EAGAIN {
				if timeout > 0 && armedAt != done {
					// The socket is full: wait for room at most timeout from the last progress.
					// (Setting a deadline here is allowed: it takes only the descriptor's
					// reference count, not the write lock this callback runs under.)
					armedAt = done
					p.nc.SetWriteDeadline(time.Now().Add(timeout))
				}
				return false
			}
			if e != 0 {
				errno = e
				return true
			}
			done += n
		}
		return true
	})
	if armedAt >= 0 {
		p.nc.SetWriteDeadline(time.Time{}) // a later write must not find this deadline passed
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = errSendTimeout
	case err == nil && errno != 0:
		err = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
	}
	return done, err
}

// errSendTimeout: the peer took no byte for the send timeout (it stopped reading).
var errSendTimeout = errors.New("session: send timeout, the client stopped reading")

// setSendTimeout sets the send timeout of sysWrite (and of the TCP pacer under a TLS
// connection); called once the handshake is over, when the connection starts its writer.
func (p *readPacer) setSendTimeout(d time.Duration) {
	if p.inner != nil {
		p.inner.sendTimeout = d
	}
	p.sendTimeout = d
}

const rawWriteChunk = 256 << 10

// tryRead reads what the socket holds without waiting (a read returns bytes below the
// low-water mark). 0 when there is nothing or on error: the caller's next read reports it.
func (p *readPacer) tryRead(b []byte) int {
	n := 0
	p.raw.Control(func(fd uintptr) {
		if m, errno := rawRead(fd, b); errno == 0 {
			n = m
		}
	})
	return n
}
