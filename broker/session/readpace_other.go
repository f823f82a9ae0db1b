//go:build !linux

package session

import "syscall"

// paceSupported: elsewhere SO_RCVLOWAT does not reliably gate poll readiness; no pacing.
const paceSupported = false

func setRcvLowat(fd, v int) error { return nil }

func rawRead(fd uintptr, b []byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }

func rawWrite(fd uintptr, b []byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }

func rawWritev(fd uintptr, iov []syscall.Iovec) (int, syscall.Errno) { return 0, syscall.ENOSYS }
