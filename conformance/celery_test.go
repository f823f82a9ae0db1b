package conformance

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
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

	// The suite starts Celery worker processes; runClient ends them with the suite.
	runClient(t, "celery suite", 120*time.Second, dir,
		[]string{"WARREN_URL=" + u, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"},
		celeryPython, "-B", "-m", "unittest", "discover", "-s", dir, "-v")
}
