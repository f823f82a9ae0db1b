package mgmt_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// noRedirect is a client that reports redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func dashGet(t *testing.T, c *http.Client, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// As RabbitMQ's UI: the page and its files are public, the data behind them is not.
func TestDashboard_FilesArePublicAndTheAPIIsNot(t *testing.T) {
	e := start(t)
	for path, ctype := range map[string]string{
		"/":                 "text/html; charset=utf-8",
		"/ui/dashboard.js":  "text/javascript; charset=utf-8",
		"/ui/dashboard.css": "text/css; charset=utf-8",
	} {
		resp, body := dashGet(t, http.DefaultClient, e.http.URL+path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctype || body == "" {
			t.Errorf("GET %s: %d %q (%d bytes), want 200 %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", path)
		}
		// Revalidation with the ETag answers 304 without a body.
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", path)
		}
		if resp, _ := dashGet(t, http.DefaultClient, e.http.URL+path, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: %d, want 304", path, resp.StatusCode)
		}
	}
	_, page := dashGet(t, http.DefaultClient, e.http.URL+"/")
	for _, ref := range []string{`src="/ui/dashboard.js"`, `href="/ui/dashboard.css"`} {
		if !strings.Contains(page, ref) {
			t.Errorf("index.html does not reference %s", ref)
		}
	}
	for _, path := range []string{"/ui/nope.js", "/ui/", "/nope", "/ui/..%2Fdashboard.go"} {
		if resp, _ := dashGet(t, http.DefaultClient, e.http.URL+path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	if resp, _ := dashGet(t, http.DefaultClient, e.http.URL+"/api/overview"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/overview without credentials: %d, want 401", resp.StatusCode)
	}
}

// /ui/login no longer challenges (a browser would cache what it was given for the origin):
// with or without credentials it only sends the browser to the page and its sign-in form.
func TestDashboard_LoginNeverChallenges(t *testing.T) {
	e := start(t)
	for _, user := range []string{"", "guest"} {
		req, _ := http.NewRequest("GET", e.http.URL+"/ui/login", nil)
		if user != "" {
			req.SetBasicAuth(user, "guest")
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/" || resp.Header.Get("WWW-Authenticate") != "" {
			t.Fatalf("GET /ui/login (user %q): %d Location %q WWW-Authenticate %q, want 302 to / without a challenge",
				user, resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("WWW-Authenticate"))
		}
	}
	_, page := dashGet(t, http.DefaultClient, e.http.URL+"/")
	for _, id := range []string{`id="login-form"`, `id="login-user"`, `id="login-pass"`, `id="signout"`} {
		if !strings.Contains(page, id) {
			t.Errorf("index.html has no %s", id)
		}
	}
}
