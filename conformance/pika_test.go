package conformance

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pikaPython is the interpreter that has the Debian python3-pika package.
const pikaPython = "/usr/bin/python3"

// TestPikaSuite runs the Python unittest suite in conformance/pika (real pika client, stdlib
// unittest) against the broker under test, streaming its output into the test log.
func TestPikaSuite(t *testing.T) {
	probe, cancelProbe := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelProbe()
	if out, err := exec.CommandContext(probe, pikaPython, "-c", "import pika").CombinedOutput(); err != nil {
		clientMissing(t, "pika suite skipped: %s -c \"import pika\" failed (%v): %s "+
			"(install python3-pika to run it)", pikaPython, err, strings.TrimSpace(string(out)))
	}

	dir, err := filepath.Abs("pika")
	if err != nil {
		t.Fatal(err)
	}
	u, err := pikaURL(brokerURL)
	if err != nil {
		t.Fatalf("broker URL %q: %v", brokerURL, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pikaPython, "-B", "-m", "unittest", "discover", "-s", dir, "-v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WARREN_URL="+u, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
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

	t.Logf("running %s -m unittest discover -s %s with WARREN_URL=%s", pikaPython, dir, u)
	start := time.Now()
	runErr := cmd.Run()
	pw.Close()
	wg.Wait()

	switch {
	case ctx.Err() != nil:
		t.Fatalf("pika suite did not finish within 120s (killed): %v", runErr)
	case runErr != nil:
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			t.Fatalf("pika suite failed (exit code %d) after %s; see the log above",
				ee.ExitCode(), time.Since(start).Round(time.Millisecond))
		}
		t.Fatalf("pika suite could not run: %v", runErr)
	}
	t.Logf("pika suite passed in %s", time.Since(start).Round(time.Millisecond))
}

// pikaURL makes the default vhost explicit: pika reads the first path segment as the vhost,
// so amqp://h:p/ and amqp://h:p both mean "/", but "/%2F" says so unambiguously.
func pikaURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Path == "" || u.Path == "/" {
		u.Path, u.RawPath = "", ""
		return u.String() + "/%2F", nil
	}
	return u.String(), nil
}
