package conformance

// The web dashboard served by the management endpoint at / (Warren only: RabbitMQ's UI is a
// different page). A headless Chromium, driven over the DevTools protocol (cdp_test.go),
// loads it against a broker of the test's own, with known figures, signs in through the
// page's own form as a person would, and the test reads the rendered DOM and saves
// screenshots.
//
// Signing in: the dashboard's HTML is public and its data comes from the authenticated /api/,
// as in RabbitMQ. The page keeps the credentials typed into its form in sessionStorage and
// sends them on each call; the browser itself never holds credentials for the origin
// (TestDashboard_CrossSiteFormChangesNothing checks what that, and the API's defences, buy).

import (
	"bytes"
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

	br := startBrowser(t, chromium)
	page := br.newTab()
	page.navigate("http://" + b.HTTPAddr + "/")
	page.signIn("guest", "guest")
	// The overview, the node panel and every table fill in once the sampler has a rate.
	page.waitFor(`document.getElementById("t-queues").textContent === "2" &&
		document.querySelector('#queues tr[data-name="dash-q"]') &&
		!/–|^0\.0\/s$/.test(document.querySelector('[data-series="publish"]').textContent)`, 30*time.Second)
	dom := page.dom()

	if strings.Contains(dom, "Access refused") {
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
	for _, shot := range []struct{ name, fragment string }{{"dashboard-overview.png", "overview"}, {"dashboard-queues.png", "queues"}} {
		page.eval(`location.hash = "#`+shot.fragment+`"`, nil)
		page.waitFor(`!document.getElementById("tab-`+shot.fragment+`").hidden`, 10*time.Second)
		time.Sleep(300 * time.Millisecond) // let the charts draw
		png := page.screenshot()
		if !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("screenshot %s: not a PNG (%d bytes)", shot.name, len(png))
		}
		t.Logf("screenshot %s: %d bytes", shot.name, len(png))
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
	page := startBrowser(t, chromium).newTab()
	page.navigate("http://" + b.HTTPAddr + "/")
	page.signIn("guest", "guest")
	page.waitFor(`document.querySelector(".banner.alarm") && document.querySelector("#n-alarms .badge.bad")`, 20*time.Second)
	dom := page.dom()
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
