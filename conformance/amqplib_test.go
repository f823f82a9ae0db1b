package conformance

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestAmqplibSuite runs the node:test suite in conformance/amqplib (the real Node.js amqplib
// client, pinned in package-lock.json) against the broker under test, streaming its output into
// the test log. It installs the pinned client with `npm ci` when node_modules is missing or
// holds another version.
func TestAmqplibSuite(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		clientMissing(t, "amqplib suite skipped: node is not installed (%v); install nodejs and npm to run it", err)
	}
	dir, err := filepath.Abs("amqplib")
	if err != nil {
		t.Fatal(err)
	}
	u, err := pikaURL(brokerURL) // amqplib, like pika, reads the path as the vhost: make "/" explicit
	if err != nil {
		t.Fatalf("broker URL %q: %v", brokerURL, err)
	}

	if want, have := amqplibVersions(dir); want == "" || want != have {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Fatalf("amqplib suite: node_modules in %s lacks amqplib %s (found %q) and npm is not installed "+
				"to run `npm ci` (%v); install npm", dir, want, have, err)
		}
		t.Logf("installing amqplib %s with npm ci (found %q)", want, have)
		amqplibRun(t, "npm ci", 180*time.Second, dir, nil, npm, "ci", "--no-audit", "--no-fund")
	}

	amqplibRun(t, "amqplib suite", 120*time.Second, dir, []string{"WARREN_URL=" + u},
		node, "--test", "--test-reporter=spec")
}

// amqplibVersions returns the amqplib version pinned in dir's package-lock.json and the one
// installed in dir/node_modules ("" when missing or unreadable).
func amqplibVersions(dir string) (want, have string) {
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if data, err := os.ReadFile(filepath.Join(dir, "package-lock.json")); err == nil && json.Unmarshal(data, &lock) == nil {
		want = lock.Packages["node_modules/amqplib"].Version
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if data, err := os.ReadFile(filepath.Join(dir, "node_modules", "amqplib", "package.json")); err == nil && json.Unmarshal(data, &pkg) == nil {
		have = pkg.Version
	}
	return want, have
}

// amqplibRun runs argv in dir with env added, streams its combined output line by line into
// t.Log, and fails the test (naming the step what) when it fails or outlives timeout.
func amqplibRun(t *testing.T, what string, timeout time.Duration, dir string, env []string, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "NPM_CONFIG_UPDATE_NOTIFIER=false")
	cmd.Env = append(cmd.Env, env...)
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

	t.Logf("running %v in %s", argv, dir)
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
