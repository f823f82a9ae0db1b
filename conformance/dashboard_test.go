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
	"html"
	"io"
	"net/http"
	"net/http/httptest"
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

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// attackPage is a hostile page: on load it submits cross-site text/plain forms to the API
// (a definitions import creating the administrator mallory, a publish, a binding) into hidden
// frames, and sends no-cors fetches (a Blob body, which has no Content-Type; an empty POST),
// then sets its title to "done".
func attackPage(api string) string {
	mallory := `{"users":[{"name":"mallory","password_hash":"` + rabbitHash("mallory") +
		`","hashing_algorithm":"rabbit_password_hashing_sha256","tags":"administrator"}],` +
		`"permissions":[{"user":"mallory","vhost":"/","configure":".*","write":".*","read":".*"}],"x":"`
	forms := []struct{ path, name string }{
		{"/api/definitions", mallory},
		{"/api/exchanges/%2F/amq.default/publish", `{"routing_key":"victim","payload":"pwned","payload_encoding":"string","properties":{},"x":"`},
		{"/api/bindings/%2F/e/amq.direct/q/victim", `{"routing_key":"pwned","x":"`},
	}
	var b strings.Builder
	b.WriteString("<!doctype html><html><head><meta charset=utf-8><title>win a prize</title></head><body>\n")
	for i, f := range forms {
		// text/plain encodes one field as name=value: the name opens the JSON, the value "}
		// closes it, so the body is {"...","x":"="}.
		fmt.Fprintf(&b, "<iframe name=\"f%d\"></iframe>\n<form target=\"f%d\" method=\"POST\" enctype=\"text/plain\" action=\"%s\">"+
			"<input type=\"hidden\" name=\"%s\" value=\"%s\"></form>\n", i, i, html.EscapeString(api+f.path), html.EscapeString(f.name), html.EscapeString(`"}`))
	}
	fmt.Fprintf(&b, `<script>
const api = %q, defs = %q;
let loads = 0;
for (const f of document.querySelectorAll("iframe")) f.addEventListener("load", () => { loads++; });
for (const f of document.forms) f.submit();
Promise.allSettled([
  fetch(api + "/api/definitions", { method: "POST", mode: "no-cors", credentials: "include", body: new Blob([defs + '="}']) }),
  fetch(api + "/api/bindings/%%2F/e/amq.direct/q/victim", { method: "POST", mode: "no-cors", credentials: "include" }),
]).then(() => {
  const t0 = Date.now();
  const wait = () => (loads >= %d || Date.now() - t0 > 10000) ? (document.title = "done " + loads) : setTimeout(wait, 50);
  wait();
});
</script></body></html>
`, api, mallory, len(forms))
	return b.String()
}

// TestDashboard_CrossSiteFormChangesNothing (issue 17): an operator is signed in to the
// dashboard, and the browser even holds Basic credentials for the API (as after answering its
// password prompt on an /api/ URL). A page from another site then auto-submits text/plain
// forms and no-cors fetches to the API: a definitions import creating an administrator, a
// publish, a binding. Nothing changes: no mallory, no message, no binding; the broker logs
// each refused cross-origin request. The dashboard stays signed in, and Sign out forgets the
// credentials.
func TestDashboard_CrossSiteFormChangesNothing(t *testing.T) {
	onlyWarren(t)
	chromium := chromiumPath(t)
	var logs lockedBuffer
	b, err := startBrokerTo(&logs, filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	_, ch := dashChannel(t, b.URL)
	if _, err := ch.QueueDeclare("victim", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	api := "http://" + b.HTTPAddr

	// The hostile site: another host name (localhost is another site than 127.0.0.1).
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, attackPage(api))
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)

	br := startBrowser(t, chromium)
	dash := br.newTab()
	// The browser answers the API's challenge with the URL's credentials and caches them for
	// the origin: from now on it attaches them to requests to /api/ by itself.
	dash.navigate("http://guest:guest@" + b.HTTPAddr + "/api/whoami")
	dash.navigate(api + "/api/whoami")
	var who string
	dash.eval("document.body.innerText", &who)
	if !strings.Contains(who, `"guest"`) {
		t.Fatalf("the browser holds no Basic credentials for the API (GET /api/whoami without them shows %q): the attack below would prove nothing", who)
	}
	// Signed in to the dashboard through its form.
	dash.navigate(api + "/")
	dash.signIn("guest", "guest")

	attack := br.newTab()
	attack.navigate(evilURL + "/")
	attack.waitFor(`document.title.startsWith("done")`, 30*time.Second)
	var title string
	attack.eval("document.title", &title)
	t.Logf("attack page: %s", title)

	// Nothing changed.
	req, _ := http.NewRequest("GET", api+"/api/users/mallory", nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /api/users/mallory: %d, want 404: the cross-site import created her", resp.StatusCode)
	}
	q, err := ch.QueueDeclarePassive("victim", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 0 {
		t.Errorf("victim holds %d messages: the cross-site publish went through", q.Messages)
	}
	var bindings []map[string]any
	mgmtGet(t, b.HTTPAddr, "/api/queues/%2F/victim/bindings", &bindings)
	if len(bindings) != 1 {
		t.Errorf("victim has bindings %v: the cross-site binding went through", bindings)
	}
	// ...because the API refused them. (Chromium 156 does not attach cached Basic credentials
	// to these cross-site requests by itself, so they would get 401 anyway: the log shows
	// that the API refused them for their origin first, as it does for clients that do attach
	// credentials, which TestCSRF_* in mgmt checks at the HTTP level.)
	evilOrigin := strings.TrimSuffix(evilURL, "/")
	if n := strings.Count(logs.String(), "cross-origin request refused"); n < 3 || !strings.Contains(logs.String(), evilOrigin) {
		t.Errorf("broker log: %d cross-origin refusals (want the forms' 3 at least, from %s):\n%s", n, evilOrigin, logs.String())
	}

	// The dashboard is still signed in; Sign out forgets the credentials, also across a reload.
	dash.waitFor(`document.getElementById("user").textContent === "guest"`, 10*time.Second)
	dash.eval(`document.getElementById("signout").click()`, nil)
	dash.waitFor(`!document.getElementById("login").hidden && document.getElementById("user").textContent === "–" && sessionStorage.length === 0`, 10*time.Second)
	dash.eval("location.reload()", nil)
	time.Sleep(500 * time.Millisecond)
	dash.waitFor(`document.readyState === "complete" && !document.getElementById("login").hidden && document.getElementById("tab-overview").hidden`, 10*time.Second)
}
