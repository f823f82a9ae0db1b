package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: the master and the terminal a program reads from.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return master, tty
}

// On a terminal, add user without a password asks for it with the terminal's echo off, and
// turns the echo back on after.
func TestWarrenctl_PasswordPromptedWithoutEcho(t *testing.T) {
	url := startNode(t)
	master, tty := openPTY(t)
	go func() { // type the password once the prompt turned the echo off
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if st, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS); err == nil && st.Lflag&unix.ECHO == 0 {
				break
			}
		}
		master.Write([]byte("typed-secret\n"))
	}()
	if err := runWith([]string{"--url", url, "add", "user", "prompted", "--tags", "management"}, tty, os.Stderr); err != nil {
		t.Fatal(err)
	}
	// What the terminal echoed: nothing of the password.
	if echoed := drain(t, master, 200*time.Millisecond); strings.Contains(echoed, "typed-secret") {
		t.Fatalf("the password was echoed: %q", echoed)
	}
	mustCtl(t, url, "--user", "prompted", "--password", "typed-secret", "status")
	st, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil || st.Lflag&unix.ECHO == 0 {
		t.Fatalf("echo not restored: %v", err)
	}
}

// drain returns what the terminal wrote to master until it has been quiet for quiet. It polls
// the descriptor: a pseudo-terminal master opened with os.OpenFile may not be in Go's poller,
// where a read deadline would not apply and a read with nothing to read blocks for good.
func drain(t *testing.T, master *os.File, quiet time.Duration) string {
	t.Helper()
	var got []byte
	buf := make([]byte, 256)
	for {
		fds := []unix.PollFd{{Fd: int32(master.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(quiet/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || fds[0].Revents&unix.POLLIN == 0 {
			return string(got)
		}
		r, err := master.Read(buf)
		got = append(got, buf[:r]...)
		if err != nil {
			return string(got)
		}
	}
}
