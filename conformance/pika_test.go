package conformance

import (
	"context"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
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

	runClient(t, "pika suite", 120*time.Second, dir,
		[]string{"WARREN_URL=" + u, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"},
		pikaPython, "-B", "-m", "unittest", "discover", "-s", dir, "-v")
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
