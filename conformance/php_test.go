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
	"testing"
	"time"
)

// TestPHPSuite runs the PHP scripts in conformance/php against the broker under test, streaming
// their output into the test log: the "amqplib" half with php-amqplib (Debian php-amqplib) and
// the "ext" half with the php-amqp extension on rabbitmq-c (Debian php-amqp). Each half is
// skipped when its client is not installed; the whole test when php is missing.
func TestPHPSuite(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		clientMissing(t, "php suite skipped: php is not installed (%v); install php-cli, php-amqplib and php-amqp to run it", err)
	}
	dir, err := filepath.Abs("php")
	if err != nil {
		t.Fatal(err)
	}
	u, err := pikaURL(brokerURL) // the scripts read the path as the vhost: make "/" explicit
	if err != nil {
		t.Fatalf("broker URL %q: %v", brokerURL, err)
	}

	halves := []struct {
		suite, probe, pkg string
		timeout           time.Duration
	}{
		{"amqplib", `exit((@include_once "PhpAmqpLib/autoload.php") ? 0 : 1);`, "php-amqplib", 90 * time.Second},
		{"ext", `exit(extension_loaded("amqp") ? 0 : 1);`, "php-amqp", 60 * time.Second},
	}
	for _, h := range halves {
		t.Run(h.suite, func(t *testing.T) {
			probe, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if out, err := exec.CommandContext(probe, php, "-r", h.probe).CombinedOutput(); err != nil {
				clientMissing(t, "php %s suite skipped: php -r '%s' failed (%v): %s (install %s to run it)",
					h.suite, h.probe, err, strings.TrimSpace(string(out)), h.pkg)
			}
			phpRun(t, "php "+h.suite+" suite", h.timeout, dir, []string{"WARREN_URL=" + u},
				php, "run.php", h.suite)
		})
	}
}

// phpRun runs argv in dir with env added, streams its combined output line by line into t.Log,
// and fails the test (naming the step what) when it fails or outlives timeout.
func phpRun(t *testing.T, what string, timeout time.Duration, dir string, env []string, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second

	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			t.Log(sc.Text())
		}
		io.Copy(io.Discard, pr) // drain after an over-long line so the writer never blocks
	}()

	t.Logf("running %v in %s with %v", argv, dir, env)
	start := time.Now()
	runErr := cmd.Run()
	pw.Close()
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
