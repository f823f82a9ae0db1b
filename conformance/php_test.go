package conformance

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
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
			runClient(t, "php "+h.suite+" suite", h.timeout, dir, []string{"WARREN_URL=" + u},
				php, "run.php", h.suite)
		})
	}
}
