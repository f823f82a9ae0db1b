package conformance

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"
)

// TestSecurity_UsersAndPermissionsSurviveRestart: users, vhosts and permissions created at
// runtime (through the management API) are still there after a restart, as in RabbitMQ.
func TestSecurity_UsersAndPermissionsSurviveRestart(t *testing.T) {
	onlyWarren(t)
	data := filepath.Join(t.TempDir(), "data")
	b, err := StartBroker(data)
	if err != nil {
		t.Fatal(err)
	}
	u, v := secName(t, "keeper"), "/"+secName(t, "kept")
	call := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+b.HTTPAddr+path, bytes.NewReader([]byte(body)))
		req.SetBasicAuth("guest", "guest")
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
		}
	}
	call("PUT", "/api/vhosts/"+url.PathEscape(v), "{}")
	call("PUT", "/api/users/"+url.PathEscape(u), `{"password":"pw","tags":""}`)
	call("PUT", "/api/permissions/"+url.PathEscape(v)+"/"+url.PathEscape(u), `{"configure":".*","write":".*","read":".*"}`)
	sb := &secBroker{amqpAddr: b.AMQPAddr}
	if err := dialErr(t, sb.url(u, "pw", v)); err != nil {
		t.Fatalf("before restart: %v", err)
	}
	b.Stop()

	b, err = StartBroker(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	sb = &secBroker{amqpAddr: b.AMQPAddr}
	if err := dialErr(t, sb.url(u, "pw", v)); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if err := dialErr(t, sb.url(u, "wrong", v)); err == nil {
		t.Fatal("wrong password accepted after restart")
	}
	if err := dialErr(t, sb.url("guest", "guest", "/")); err != nil {
		t.Fatalf("guest after restart: %v", err)
	}
}
