package mgmt_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/mgmt"
)

// env is an in-process broker with the management API in front of it.
type env struct {
	t    testing.TB
	b    *broker.Server
	m    *mgmt.Server
	http *httptest.Server
	amqp string
}

func start(t testing.TB) *env {
	t.Helper()
	return startWith(t, mgmt.Config{})
}

// startWith is start with management settings of the test's own (Broker, Log, SampleInterval
// and Node are filled in).
func startWith(t testing.TB, cfg mgmt.Config) *env {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t))
	b, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:0", DataDir: t.TempDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	cfg.Broker, cfg.Log, cfg.SampleInterval, cfg.Node = b, log, 50*time.Millisecond, "warren@test"
	m := mgmt.New(cfg)
	hs := httptest.NewServer(m)
	e := &env{t: t, b: b, m: m, http: hs, amqp: "amqp://guest:guest@" + b.Addr().String() + "/"}
	t.Cleanup(func() {
		hs.Close()
		m.Close()
		b.Close()
	})
	return e
}

// do sends a request as guest and returns the status and body.
func (e *env) do(method, path string, body any) (int, []byte) {
	return e.doAs("guest", "guest", method, path, body)
}

func (e *env) doAs(user, pass, method, path string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			data, _ := json.Marshal(body)
			rd = bytes.NewReader(data)
		}
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// must sends a request and fails the test unless the status is want.
func (e *env) must(want int, method, path string, body any) []byte {
	e.t.Helper()
	code, data := e.do(method, path, body)
	if code != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, data)
	}
	return data
}

func (e *env) getObj(path string) map[string]any {
	e.t.Helper()
	var o map[string]any
	if err := json.Unmarshal(e.must(200, "GET", path, nil), &o); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return o
}

func (e *env) getList(path string) []map[string]any {
	e.t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(e.must(200, "GET", path, nil), &l); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return l
}

func (e *env) dial() (*amqp.Connection, *amqp.Channel) {
	e.t.Helper()
	c, err := amqp.Dial(e.amqp)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	return c, ch
}

// eventually polls f until it returns "" or the deadline passes.
func eventually(t testing.TB, f func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// num reads a JSON number at a dotted path.
func num(o map[string]any, path string) float64 {
	var cur any = o
	for _, p := range strings.Split(path, ".") {
		m, _ := cur.(map[string]any)
		cur = m[p]
	}
	f, _ := cur.(float64)
	return f
}
