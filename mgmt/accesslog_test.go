package mgmt_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/mgmt"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) requests() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["message"] == "http request" {
			out = append(out, m)
		}
	}
	return out
}

// At debug level every HTTP request is logged (method, path, status, user, peer, duration);
// at info none is.
func TestAccessLog_AtDebugOnly(t *testing.T) {
	for _, level := range []zerolog.Level{zerolog.DebugLevel, zerolog.InfoLevel} {
		var logs lockedBuffer
		log := zerolog.New(&logs).Level(level)
		b, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:0", DataDir: t.TempDir(), Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		m := mgmt.New(mgmt.Config{Broker: b, Log: log, SampleInterval: time.Second, Node: "warren@test"})
		hs := httptest.NewServer(m)
		for _, u := range []string{"guest:guest", "guest:wrong"} {
			req, _ := http.NewRequest("GET", hs.URL+"/api/queues/%2F", nil)
			user, pass, _ := bytes.Cut([]byte(u), []byte(":"))
			req.SetBasicAuth(string(user), string(pass))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		hs.Close()
		m.Close()
		b.Close()
		got := logs.requests()
		if level == zerolog.InfoLevel {
			if len(got) != 0 {
				t.Fatalf("access log at info: %v", got)
			}
			continue
		}
		if len(got) != 2 {
			t.Fatalf("access log lines: %v", got)
		}
		for i, want := range []float64{200, 401} {
			l := got[i]
			if l["level"] != "debug" || l["method"] != "GET" || l["path"] != "/api/queues/%2F" || l["status"] != want || l["user"] != "guest" || l["remote"] == "" || l["duration"] == nil {
				t.Errorf("access log line %d: %v", i, l)
			}
		}
	}
}
