package conformance

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runClient runs another client's test command (argv, in dir, with env added to the
// environment) against the broker under test. It streams the command's combined output line
// by line into t.Log and fails the test, naming the step what, when the command fails or
// outlives timeout. The command runs in its own process group, killed as a whole at the time
// limit and once it ends, so a suite that starts helper processes (Celery workers) leaves none
// behind.
func runClient(t *testing.T, what string, timeout time.Duration, dir string, env []string, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second

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

	t.Logf("running %v in %s with %v", argv, dir, env)
	start := time.Now()
	runErr := cmd.Start()
	pw.Close() // the command and its children hold the write end now
	if runErr == nil {
		runErr = cmd.Wait()
		// Whatever the command left running in its group goes too.
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Logf("kill process group %d: %v", cmd.Process.Pid, err)
		}
	}
	wg.Wait()

	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s did not finish within %s (killed): %v", what, timeout, runErr)
	case runErr != nil:
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			t.Fatalf("%s failed (exit code %d) after %s; see the log above",
				what, ee.ExitCode(), time.Since(start).Round(time.Millisecond))
		}
		t.Fatalf("%s could not run: %v", what, runErr)
	}
	t.Logf("%s passed in %s", what, time.Since(start).Round(time.Millisecond))
}
