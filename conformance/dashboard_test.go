package conformance

// The web dashboard served by the management endpoint at / (Warren only: RabbitMQ's UI is a
// different page). A headless Chromium loads it against a broker of the test's own, with known
// figures, and the test reads the rendered DOM and saves screenshots.
//
// Signing in: the dashboard's HTML is public and its data comes from the authenticated /api/,
// as in RabbitMQ. Chromium uses credentials written in a URL only to answer a 401 challenge,
// so http://guest:guest@host/ alone would load the public page and leave its API calls
// unauthenticated. The test opens http://guest:guest@host/ui/login instead: that page
// challenges, Chromium answers with the URL's credentials and caches them for the API's realm,
// and the redirect to / (keeping the #tab fragment) loads the dashboard, whose fetch() calls
// then get the cached credentials, as after a browser's own password prompt. (Opened without
// credentials, headless Chromium waits for ever on the API's challenge, where a desktop browser
// would show its password prompt; hence the 60 s bound on every run.)

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// chromiumPath returns the Chromium binary, skipping the test when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	clientMissing(t, "dashboard: chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
	return ""
}

// headless runs Chromium in headless mode on url with the given action flags (--dump-dom or
// --screenshot=...) and returns its standard output. The page gets virtualBudget of virtual
// time (timers run without waiting; network requests still take real time). Every run is
// bounded by 60 s and kills Chromium's whole process group when it ends or times out.
func headless(t *testing.T, chromium, url string, virtualBudget time.Duration, action ...string) []byte {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,900", "--hide-scrollbars",
		fmt.Sprintf("--virtual-time-budget=%d", virtualBudget.Milliseconds()),
	}
	cmd := exec.CommandContext(c, chromium, append(append(args, action...), url)...)
	cmd.Dir = t.TempDir() // --screenshot without a path writes here
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind by the browser
	}
	if err != nil {
		hint := ""
		if c.Err() != nil {
			// Headless Chromium has no password prompt: a fetch() answered 401 with a Basic
			// challenge stays pending, virtual time stops, and the run never ends.
			hint = " (timed out: usually an API call met a basic-auth challenge that the /ui/login sign-in should have answered)"
		}
		t.Fatalf("chromium %s %s: %v after %v%s\nstderr:\n%s", strings.Join(action, " "), url, err, time.Since(start).Round(time.Millisecond), hint, stderr.Bytes())
	}
	t.Logf("chromium %s: %v", strings.Join(action, " "), time.Since(start).Round(time.Millisecond))
	return stdout.Bytes()
}

// dashLoad keeps messages flowing through queue dash-load (publish, deliver, ack) until the
// test ends, so the dashboard's rates are not zero.
func dashLoad(t *testing.T, url string) {
	t.Helper()
	conn := dialURL(t, url)
	pub, sub := openChannel(t, conn), openChannel(t, conn)
	if _, err := pub.QueueDeclare("dash-load", false, false, false, false, nil); err != nil {
		t.Fatalf("queue.declare dash-load: %v", err)
	}
	if err := sub.Qos(50, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	deliveries, err := sub.Consume("dash-load", "dash-load-consumer", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume dash-load: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if pub.Publish("", "dash-load", false, false, amqp.Publishing{Body: []byte("load")}) != nil {
					return
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case d, ok := <-deliveries:
				if !ok {
					return
				}
				d.Ack(false)
			}
		}
	}()
	// Registered after dialURL's cleanup, so it runs first: the goroutines stop before the
	// connection closes.
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// mgmtGet reads a management API document as guest.
func mgmtGet(t *testing.T, addr, path string, into any) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// domText returns the text of the first element of dom with the given id.
func domText(t *testing.T, dom, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("dashboard DOM has no element #%s", id)
	}
	return strings.TrimSpace(m[1])
}

// domCell returns the text of cell key in the row for name (vhost "/") of table id.
func domCell(t *testing.T, dom, table, name, key string) string {
	t.Helper()
	tm := regexp.MustCompile(`(?s)<table[^>]*id="` + table + `".*?</table>`).FindString(dom)
	row := regexp.MustCompile(`(?s)<tr data-name="` + regexp.QuoteMeta(name) + `" data-vhost="/">.*?</tr>`).FindString(tm)
	if row == "" {
		t.Fatalf("dashboard table #%s has no row %q:\n%s", table, name, tm)
	}
	m := regexp.MustCompile(`<td data-key="` + regexp.QuoteMeta(key) + `"[^>]*>(.*?)</td>`).FindStringSubmatch(row)
	if m == nil {
		t.Fatalf("row %q of #%s has no cell %s: %s", name, table, key, row)
	}
	return regexp.MustCompile(`<[^>]*>`).ReplaceAllString(m[1], "")
}

// countRows counts the data rows of table id.
func countRows(dom, table string) int {
	tm := regexp.MustCompile(`(?s)<table[^>]*id="` + table + `".*?</table>`).FindString(dom)
	return strings.Count(tm, "<tr data-name=")
}

func TestDashboard_ShowsLiveBrokerFigures(t *testing.T) {
	onlyWarren(t)
	chromium := chromiumPath(t)
	began := time.Now()

	// A broker of our own: the totals on the page are then exactly what this test made.
	b, err := StartBroker(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	if b.HTTPAddr == "" {
		t.Fatal("broker has no HTTP address")
	}

	// dash-q: 42 ready messages, no consumer.
	_, ch := dashChannel(t, b.URL)
	if _, err := ch.QueueDeclare("dash-q", false, false, false, false, nil); err != nil {
		t.Fatalf("queue.declare dash-q: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm.select: %v", err)
	}
	c := ctx(t, 10*time.Second)
	for i := range 42 {
		dc, err := ch.PublishWithDeferredConfirmWithContext(c, "", "dash-q", false, false, amqp.Publishing{Body: fmt.Appendf(nil, "m%d", i)})
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		if ok, err := dc.WaitContext(c); !ok || err != nil {
			t.Fatalf("confirm %d: ok=%v err=%v", i, ok, err)
		}
	}
	dashLoad(t, b.URL)

	// Rates come from the 5 s sampler: wait (bounded) until the node shows a publish rate.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var ov struct {
			MessageStats struct {
				PublishDetails struct{ Rate float64 } `json:"publish_details"`
			} `json:"message_stats"`
		}
		mgmtGet(t, b.HTTPAddr, "/api/overview", &ov)
		if ov.MessageStats.PublishDetails.Rate > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no publish rate in /api/overview within 15s")
		}
		time.Sleep(250 * time.Millisecond)
	}

	login := "http://guest:guest@" + b.HTTPAddr + "/ui/login"
	dom := string(headless(t, chromium, login, 8*time.Second, "--dump-dom"))

	if strings.Contains(dom, "Sign in to see the broker") || strings.Contains(dom, "Access refused") {
		t.Fatalf("dashboard did not sign in:\n%s", dom)
	}
	if got := domText(t, dom, "user"); got != "guest" {
		t.Errorf("signed-in user: got %q, want guest", got)
	}
	if got := domText(t, dom, "node"); !strings.HasPrefix(got, "warren@") {
		t.Errorf("node: got %q, want warren@...", got)
	}
	for id, want := range map[string]string{"t-queues": "2", "t-connections": "2", "t-consumers": "1", "t-channels": "3"} {
		if got := domText(t, dom, id); got != want {
			t.Errorf("overview #%s: got %q, want %s", id, got, want)
		}
	}
	// dash-load drains as fast as it fills, so the node holds 42 ready plus at most a few.
	if ready, err := strconv.Atoi(strings.ReplaceAll(domText(t, dom, "t-ready"), ",", "")); err != nil || ready < 42 || ready > 60 {
		t.Errorf("overview ready: got %q, want 42 (+ dash-load's in flight)", domText(t, dom, "t-ready"))
	}
	if m := regexp.MustCompile(`data-series="publish">([^<]*)<`).FindStringSubmatch(dom); m == nil || m[1] == "–" || m[1] == "0.0/s" {
		t.Errorf("publish rate legend: got %q, want a non-zero rate", m)
	}
	if got := domCell(t, dom, "queues", "dash-q", "messages_ready"); got != "42" {
		t.Errorf("queues table, dash-q ready: got %q, want 42", got)
	}
	if got := domCell(t, dom, "queues", "dash-q", "consumers"); got != "0" {
		t.Errorf("queues table, dash-q consumers: got %q, want 0", got)
	}
	if got := domCell(t, dom, "queues", "dash-load", "consumers"); got != "1" {
		t.Errorf("queues table, dash-load consumers: got %q, want 1", got)
	}
	if n := countRows(dom, "connections"); n != 2 {
		t.Errorf("connections table: %d rows, want 2", n)
	}
	if got := domCell(t, dom, "exchanges", "amq.topic", "type"); got != "topic" {
		t.Errorf("exchanges table, amq.topic type: got %q, want topic", got)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	// Screenshots of the overview and the queues tab, for people to look at.
	dir := t.TempDir()
	for _, shot := range []struct{ name, fragment string }{{"dashboard-overview.png", ""}, {"dashboard-queues.png", "#queues"}} {
		path := filepath.Join(dir, shot.name)
		headless(t, chromium, login+shot.fragment, 12*time.Second, "--screenshot="+path)
		png, err := os.ReadFile(path)
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("screenshot %s: %v (%d bytes)", path, err, len(png))
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
		if out := os.Getenv("WARREN_SCREENSHOT_DIR"); out != "" {
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, shot.name), png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot copied to %s", filepath.Join(out, shot.name))
		}
	}
	t.Logf("dashboard test took %v", time.Since(began).Round(time.Millisecond))
}

// dashChannel is dialChannel against the broker at url (this test's own, not the suite's).
func dashChannel(t *testing.T, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	c := dialURL(t, url)
	return c, openChannel(t, c)
}

// A resource alarm (here the disk alarm, forced by a free-disk limit no disk meets) shows as a
// banner and in the node panel, from /api/health/checks/alarms and /api/nodes.
func TestDashboard_ShowsResourceAlarm(t *testing.T) {
	onlyWarren(t)
	chromium := chromiumPath(t)
	b, err := StartBroker(filepath.Join(t.TempDir(), "data"), "--disk-free-limit", "1000000000000000000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	dom := string(headless(t, chromium, "http://guest:guest@"+b.HTTPAddr+"/ui/login", 4*time.Second, "--dump-dom"))
	banner := regexp.MustCompile(`class="banner alarm"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
	if banner == nil || !strings.Contains(banner[1], "disk") {
		t.Errorf("no disk alarm banner: %q", banner)
	}
	if m := regexp.MustCompile(`id="n-alarms"[^>]*><span class="badge bad">([^<]*)<`).FindStringSubmatch(dom); m == nil || m[1] != "disk" {
		t.Errorf("node panel alarms: got %q, want disk", m)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
