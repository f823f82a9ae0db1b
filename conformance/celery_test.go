package conformance

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// celeryPython is the interpreter that has Debian's python3-celery and python3-kombu.
const celeryPython = "/usr/bin/python3"

// TestCelerySuite runs the Python unittest suite in conformance/celery against the broker under
// test: kombu (connections, heartbeats, producers and consumers, SimpleQueue/SimpleBuffer,
// queue declarations) and Celery end to end (a real worker process, results through the rpc://
// backend, retries, countdown, task_routes, acks_late redelivery, events, remote control).
func TestCelerySuite(t *testing.T) {
	probe, cancelProbe := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelProbe()
	if out, err := exec.CommandContext(probe, celeryPython, "-c", "import celery, kombu").CombinedOutput(); err != nil {
		clientMissing(t, "celery suite skipped: %s -c \"import celery, kombu\" failed (%v): %s "+
			"(install python3-celery and python3-kombu to run it)",
			celeryPython, err, strings.TrimSpace(string(out)))
	}

	dir, err := filepath.Abs("celery")
	if err != nil {
		t.Fatal(err)
	}
	u, err := pikaURL(brokerURL) // kombu also reads the vhost from the path: "/%2F" is "/"
	if err != nil {
		t.Fatalf("broker URL %q: %v", brokerURL, err)
	}

	const limit = 120 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, celeryPython, "-B", "-m", "unittest", "discover", "-s", dir, "-v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WARREN_URL="+u, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	// The suite starts Celery worker processes. They stay in the suite's process group, so a
	// suite killed at the time limit takes its workers with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			t.Log(sc.Text())
		}
		io.Copy(io.Discard, pr) // drain after an over-long line so the writers never block
	}()

	t.Logf("running %s -m unittest discover -s %s with WARREN_URL=%s", celeryPython, dir, u)
	start := time.Now()
	runErr := cmd.Start()
	pw.Close() // the children hold the write end now
	if runErr == nil {
		runErr = cmd.Wait()
		// A worker left behind by a crashed suite: end the group (only processes it started).
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Logf("kill process group %d: %v", cmd.Process.Pid, err)
		}
	}
	wg.Wait()

	switch {
	case ctx.Err() != nil:
		t.Fatalf("celery suite did not finish within %s (killed): %v", limit, runErr)
	case runErr != nil:
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			t.Fatalf("celery suite failed (exit code %d) after %s; see the log above",
				ee.ExitCode(), time.Since(start).Round(time.Millisecond))
		}
		t.Fatalf("celery suite could not run: %v", runErr)
	}
	t.Logf("celery suite passed in %s", time.Since(start).Round(time.Millisecond))
}
