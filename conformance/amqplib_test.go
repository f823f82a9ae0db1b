package conformance

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
		runClient(t, "npm ci", 180*time.Second, dir, []string{"NPM_CONFIG_UPDATE_NOTIFIER=false"}, npm, "ci", "--no-audit", "--no-fund")
	}

	runClient(t, "amqplib suite", 120*time.Second, dir, []string{"WARREN_URL=" + u, "NO_COLOR=1"},
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
