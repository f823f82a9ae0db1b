package mgmt_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/mgmt"
)

// healthTarget is a management endpoint to run the health checks against: Warren in process,
// or RabbitMQ's when MGMT_RABBITMQ_URL is set (http://127.0.0.1:15672, guest/guest), which is
// how the expected answers were checked.
type healthTarget struct {
	base string
}

func (h healthTarget) get(t *testing.T, user, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", h.base+path, nil)
	if user != "" {
		req.SetBasicAuth(user, user)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var o map[string]any
	if err := json.Unmarshal(data, &o); err != nil && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET %s: %d %q: %v", path, resp.StatusCode, data, err)
	}
	return resp.StatusCode, o
}

func healthTargets(t *testing.T) map[string]healthTarget {
	out := map[string]healthTarget{"warren": {base: start(t).http.URL}}
	if u := os.Getenv("MGMT_RABBITMQ_URL"); u != "" {
		out["rabbitmq"] = healthTarget{base: strings.TrimRight(u, "/")}
	}
	return out
}

// amqpPort is the port of the target's AMQP listener, from /api/overview's listeners.
func (h healthTarget) amqpPort(t *testing.T) float64 {
	_, o := h.get(t, "guest", "/api/overview")
	ls, _ := o["listeners"].([]any)
	for _, l := range ls {
		if m, _ := l.(map[string]any); m["protocol"] == "amqp" {
			return m["port"].(float64)
		}
	}
	t.Fatalf("no amqp listener in %v", o["listeners"])
	return 0
}

// The health checks answer with RabbitMQ 3.10's status codes and bodies on a healthy single
// node without TLS (run with MGMT_RABBITMQ_URL to check the expectations against RabbitMQ).
func TestHealth_ChecksAnswerAsRabbitMQ(t *testing.T) {
	for name, h := range healthTargets(t) {
		t.Run(name, func(t *testing.T) {
			port := h.amqpPort(t)
			ok := map[string]any{"status": "ok"}
			cases := []struct {
				path string
				code int
				body map[string]any // nil: checked below
			}{
				{"/api/health/checks/alarms", 200, ok},
				{"/api/health/checks/local-alarms", 200, ok},
				{"/api/health/checks/virtual-hosts", 200, ok},
				{"/api/health/checks/virtual-hosts/", 200, ok},
				{"/api/health/checks/port-listener/" + ftoa(port), 200, map[string]any{"status": "ok", "port": port}},
				{"/api/health/checks/port-listener/abc", 400, map[string]any{"error": "bad_request", "reason": "Invalid port"}},
				{"/api/health/checks/port-listener/1", 503, nil},
				{"/api/health/checks/protocol-listener/amqp", 200, map[string]any{"status": "ok", "protocol": "amqp"}},
				{"/api/health/checks/protocol-listener/amqp091", 200, map[string]any{"status": "ok", "protocol": "amqp"}},
				{"/api/health/checks/protocol-listener/AMQP0-9-1", 200, map[string]any{"status": "ok", "protocol": "amqp"}},
				{"/api/health/checks/protocol-listener/http", 200, map[string]any{"status": "ok", "protocol": "http"}},
				{"/api/health/checks/protocol-listener/management", 200, map[string]any{"status": "ok", "protocol": "http"}},
				{"/api/health/checks/protocol-listener/amqps", 503, nil},
				{"/api/health/checks/protocol-listener/bogus", 503, nil},
				{"/api/health/checks/certificate-expiration/1/months", 200, ok},
				{"/api/health/checks/certificate-expiration/4/Weeks", 200, ok},
				{"/api/health/checks/certificate-expiration/1/day", 400, map[string]any{"error": "bad_request", "reason": "Time unit not recognised. Supported units: days, weeks, months, years."}},
				{"/api/health/checks/certificate-expiration/1.5/days", 400, map[string]any{"error": "bad_request", "reason": "Invalid expiration value."}},
				{"/api/health/checks/node-is-quorum-critical", 200, map[string]any{"status": "ok", "reason": "single node cluster"}},
			}
			for _, c := range cases {
				code, body := h.get(t, "guest", c.path)
				if code != c.code || c.body != nil && !reflect.DeepEqual(body, c.body) {
					t.Errorf("GET %s: %d %v, want %d %v", c.path, code, body, c.code, c.body)
				}
			}
			// The failures name what is missing and what there is.
			_, body := h.get(t, "guest", "/api/health/checks/port-listener/1")
			if body["status"] != "failed" || body["reason"] != "No active listener" || body["missing"] != float64(1) || !contains(body["ports"], port) {
				t.Errorf("port-listener/1: %v", body)
			}
			_, body = h.get(t, "guest", "/api/health/checks/protocol-listener/amqps")
			if body["status"] != "failed" || body["reason"] != "No active listener" || body["missing"] != "amqp/ssl" ||
				!contains(body["protocols"], "amqp") || !contains(body["protocols"], "http") {
				t.Errorf("protocol-listener/amqps: %v", body)
			}
			_, body = h.get(t, "guest", "/api/health/checks/protocol-listener/Bogus")
			if body["missing"] != "bogus" {
				t.Errorf("protocol-listener/Bogus: %v", body)
			}
			if code, _ := h.get(t, "", "/api/health/checks/virtual-hosts"); code != http.StatusUnauthorized {
				t.Errorf("without credentials: %d, want 401", code)
			}
		})
	}
}

func ftoa(f float64) string { b, _ := json.Marshal(f); return string(b) }

func contains(list any, v any) bool {
	l, _ := list.([]any)
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// An alarm fails both alarm checks with RabbitMQ's reasons and resource names.
func TestHealth_AlarmsFailWithTheResource(t *testing.T) {
	e := start(t)
	e.b.SetAlarmLimits(0, 1<<62) // no disk has that much free space
	for path, reason := range map[string]string{
		"/api/health/checks/alarms":       "There are alarms in effect in the cluster",
		"/api/health/checks/local-alarms": "There are alarms in effect on the node",
	} {
		var o map[string]any
		json.Unmarshal(e.must(http.StatusServiceUnavailable, "GET", path, nil), &o)
		want := map[string]any{"status": "failed", "reason": reason, "alarms": []any{map[string]any{"node": "warren@test", "resource": "disk space"}}}
		if !reflect.DeepEqual(o, want) {
			t.Errorf("%s: %v, want %v", path, o, want)
		}
	}
	e.b.SetAlarmLimits(0, 0)
	e.must(http.StatusOK, "GET", "/api/health/checks/local-alarms", nil)
}

// writeCert writes a self-signed certificate valid until notAfter and its key as PEM files.
func writeCert(t *testing.T, dir string, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return certFile, keyFile
}

// The certificate-expiration check fails for a TLS listener whose certificate expires within
// the time asked, listing the listener and the expiry date, and reports a file that holds no
// certificate.
func TestHealth_CertificateExpiration(t *testing.T) {
	dir := t.TempDir()
	notAfter := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	certFile, keyFile := writeCert(t, dir, notAfter)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	b, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:0", AMQPSListen: "127.0.0.1:0", DataDir: t.TempDir(), Log: log,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	m := mgmt.New(mgmt.Config{Broker: b, Log: log, Node: "warren@test", CertFile: certFile})
	hs := httptest.NewServer(m)
	defer func() { hs.Close(); m.Close(); b.Close() }()
	h := healthTarget{base: hs.URL}

	if code, o := h.get(t, "guest", "/api/health/checks/certificate-expiration/9/days"); code != 200 || o["status"] != "ok" {
		t.Fatalf("9 days: %d %v", code, o)
	}
	if code, o := h.get(t, "guest", "/api/health/checks/protocol-listener/amqps"); code != 200 || o["protocol"] != "amqp/ssl" {
		t.Fatalf("amqps listener: %d %v", code, o)
	}
	code, o := h.get(t, "guest", "/api/health/checks/certificate-expiration/2/weeks")
	_, tlsPort := splitPort(b.TLSAddr().String())
	want := map[string]any{"status": "failed", "reason": "Certificates expiring", "expired": []any{map[string]any{
		"node": "warren@test", "protocol": "amqp/ssl", "interface": "127.0.0.1", "port": tlsPort,
		"certfile": certFile, "cacertfile": "", "cacertfile_expires_on": []any{},
		// RabbitMQ's format: the hour without a leading zero.
		"certfile_expires_on": []any{fmt.Sprintf("%d-%02d-%02d %d:%02d:%02d", notAfter.Year(), notAfter.Month(), notAfter.Day(),
			notAfter.Hour(), notAfter.Minute(), notAfter.Second())},
	}}}
	if code != http.StatusServiceUnavailable || !reflect.DeepEqual(o, want) {
		t.Fatalf("2 weeks: %d\n%v\nwant\n%v", code, o, want)
	}
	os.WriteFile(certFile, []byte("not a certificate\n"), 0o600)
	code, o = h.get(t, "guest", "/api/health/checks/certificate-expiration/1/days")
	exp, _ := o["expired"].([]any)
	if code != http.StatusServiceUnavailable || len(exp) != 1 ||
		!reflect.DeepEqual(exp[0].(map[string]any)["certfile_expires_on"], map[string]any{"error": "The certificate file provided does not contain any PEM entry."}) {
		t.Fatalf("unreadable certificate: %d %v", code, o)
	}
}

func splitPort(addr string) (string, float64) {
	i := strings.LastIndexByte(addr, ':')
	var p float64
	json.Unmarshal([]byte(addr[i+1:]), &p)
	return addr[:i], p
}
