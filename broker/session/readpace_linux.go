package session

import (
	"syscall"
	"unsafe"
)

// paceSupported: Linux honours SO_RCVLOWAT in poll/epoll readiness and in its TCP wakeups.
const paceSupported = true

func setRcvLowat(fd, v int) error {
	return syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, v)
}

// rawRead is read(2) without the runtime's entersyscall/exitsyscall: only for non-blocking
// sockets, where it returns at once. EINTR is retried.
func rawRead(fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}

// rawWrite is write(2) without the runtime's syscall bookkeeping, for non-blocking sockets.
func rawWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}

// rawWritev is writev(2) without the runtime's syscall bookkeeping, for non-blocking sockets.
func rawWritev(fd uintptr, iov []syscall.Iovec) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}
