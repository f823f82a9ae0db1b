package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// password returns the password for add user / change password: the argument when given;
// else the first line of stdin, after a prompt with echo off when stdin is a terminal (as
// rabbitmqctl add_user does without a password argument). fromStdin never prompts.
func (cmd *command) password(args []string, fromStdin bool) (string, error) {
	if len(args) > 0 {
		if fromStdin {
			return "", usageError("a PASSWORD argument and --password-stdin: give one")
		}
		return args[0], nil
	}
	if f, ok := cmd.in.(*os.File); ok && !fromStdin && isTerminal(f) {
		return promptPassword(f, os.Stderr)
	}
	return readLine(cmd.in)
}

// readLine reads one line (without its line end); an empty input is an error.
func readLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on stdin")
	}
	return line, nil
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// promptPassword writes "Password: " to prompt and reads a line from the terminal tty with its
// echo turned off (restored before returning).
func promptPassword(tty *os.File, prompt io.Writer) (string, error) {
	fd := int(tty.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(prompt, "Password: ")
	defer fmt.Fprintln(prompt)
	return readLine(tty)
}
