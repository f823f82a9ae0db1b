package conformance

// TLS (amqps), SASL EXTERNAL with client certificates, HTTPS for the management endpoint and
// the node-wide connection bound. Warren only: the oracle RabbitMQ runs without TLS listeners.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, generated
// per test run (no keys are committed).
type testPKI struct {
	dir                  string
	caFile               string
	serverCert, serverKy string
	clientCert, clientKy string
	pool                 *x509.CertPool
	client               tls.Certificate
	rogue                tls.Certificate // client certificate from another CA
}

const clientSubjectCN = "tls-client"

// clientDN is the client certificate's subject as RabbitMQ (and Warren) format it for
// EXTERNAL logins by default (ssl_cert_login_from = distinguished_name).
const clientDN = "CN=tls-client,O=Warren test"

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	caKey, caCert, caDER := makeCert(t, pkix.Name{CommonName: "Warren test CA"}, nil, nil, true, nil)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", caDER)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(caCert)

	srvKey, _, srvDER := makeCert(t, pkix.Name{CommonName: "127.0.0.1"}, caCert, caKey, false, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.serverCert = p.write(t, "server.pem", "CERTIFICATE", srvDER)
	p.serverKy = p.writeKey(t, "server-key.pem", srvKey)

	cliKey, _, cliDER := makeCert(t, pkix.Name{CommonName: clientSubjectCN, Organization: []string{"Warren test"}}, caCert, caKey, false, nil)
	p.clientCert = p.write(t, "client.pem", "CERTIFICATE", cliDER)
	p.clientKy = p.writeKey(t, "client-key.pem", cliKey)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}

	rogueCAKey, rogueCA, _ := makeCert(t, pkix.Name{CommonName: "Rogue CA"}, nil, nil, true, nil)
	rKey, _, rDER := makeCert(t, pkix.Name{CommonName: clientSubjectCN, Organization: []string{"Warren test"}}, rogueCA, rogueCAKey, false, nil)
	p.rogue = tls.Certificate{Certificate: [][]byte{rDER}, PrivateKey: rKey}
	return p
}

func makeCert(t *testing.T, subj pkix.Name, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool, ips []net.IP) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subj, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *testPKI) writeKey(t *testing.T, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name, "EC PRIVATE KEY", der)
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tlsBroker starts a Warren with amqps on a free port, client certificates verified against
// the test CA, HTTPS management, and the EXTERNAL users defined.
func tlsBroker(t *testing.T, p *testPKI) (amqpsAddr string, b *secBroker) {
	t.Helper()
	onlyWarren(t)
	amqpsAddr = freePort(t)
	tn := &tenancy{}
	tn.user(clientDN, "", nil)
	tn.Users[0].PasswordHash = "" // a certificate-only user: no password
	tn.perm(clientDN, "/", ".*", ".*", ".*")
	b = setupTenancy(t, tn, "--tls-cert", p.serverCert, "--tls-key", p.serverKy, "--tls-ca", p.caFile,
		"--tls-verify-peer", "--amqps-listen", amqpsAddr, "--http-tls")
	return amqpsAddr, b
}

// TestTLS_AMQPSWithPlainAndExternal: amqp091-go connects over TLS 1.2+ with PLAIN and, with a
// client certificate, with EXTERNAL as the certificate's subject DN; the certificate user
// gets its own permissions.
func TestTLS_AMQPSWithPlainAndExternal(t *testing.T) {
	p := newTestPKI(t)
	addr, _ := tlsBroker(t, p)

	c, err := amqp.DialTLS("amqps://guest:guest@"+addr+"/", &tls.Config{RootCAs: p.pool})
	if err != nil {
		t.Fatalf("amqps with PLAIN: %v", err)
	}
	defer c.Close()
	if st := c.ConnectionState(); st.Version < tls.VersionTLS12 {
		t.Fatalf("negotiated TLS version %x", st.Version)
	}
	ch := openChannel(t, c)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(ctx(t), "", q.Name, false, false, amqp.Publishing{Body: []byte("over tls")}); err != nil {
		t.Fatal(err)
	}
	if m, ok, err := ch.Get(q.Name, true); err != nil || !ok || string(m.Body) != "over tls" {
		t.Fatalf("get: %q %v %v", m.Body, ok, err)
	}

	ext, err := amqp.DialTLS_ExternalAuth("amqps://"+addr+"/", &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}})
	if err != nil {
		t.Fatalf("amqps with EXTERNAL: %v", err)
	}
	defer ext.Close()
	if _, err := openChannel(t, ext).QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatalf("declare as %s: %v", clientDN, err)
	}
}

// TestTLS_ExternalWithoutCertificateRefused: EXTERNAL needs a verified client certificate;
// without one the login is refused with 403 (authentication_failure_close).
func TestTLS_ExternalWithoutCertificateRefused(t *testing.T) {
	p := newTestPKI(t)
	addr, _ := tlsBroker(t, p)
	_, err := amqp.DialTLS_ExternalAuth("amqps://"+addr+"/", &tls.Config{RootCAs: p.pool})
	amqpErr(t, err, 403) // amqp091-go reports any refusal during login as its ErrCredentials
}

// TestTLS_RefusesOldVersionsAndForeignCertificates: TLS 1.1 and a client certificate from
// another CA fail the TLS handshake.
func TestTLS_RefusesOldVersionsAndForeignCertificates(t *testing.T) {
	p := newTestPKI(t)
	addr, _ := tlsBroker(t, p)
	dial := func(cfg *tls.Config) error {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		// TLS 1.3 reports a refused client certificate on the first read.
		if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 1))
		return err
	}
	if err := dial(&tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	// GetClientCertificate: Go would not even offer a certificate the server's CA list does not name.
	rogue := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &p.rogue, nil }
	if err := dial(&tls.Config{RootCAs: p.pool, GetClientCertificate: rogue}); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	if err := dial(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}}); err != nil {
		t.Fatalf("a good client certificate: %v", err)
	}
}

// TestTLS_ManagementOverHTTPS: with --http-tls the management endpoint speaks HTTPS with the
// same certificate.
func TestTLS_ManagementOverHTTPS(t *testing.T) {
	p := newTestPKI(t)
	_, b := tlsBroker(t, p)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
	req, _ := http.NewRequest("GET", "https://"+b.httpAddr+"/api/overview", nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /api/overview over https: %d", resp.StatusCode)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("TLS state %+v", resp.TLS)
	}
}

// pikaTLSScript connects with pika over TLS twice: PLAIN as guest, and EXTERNAL with the client
// certificate; each round trips a message through a server-named queue.
const pikaTLSScript = `
import os, ssl, pika
def run(credentials, with_cert):
    ctx = ssl.create_default_context(cafile=os.environ["CA"])
    if with_cert:
        ctx.load_cert_chain(os.environ["CERT"], os.environ["KEY"])
    params = pika.ConnectionParameters(host="127.0.0.1", port=int(os.environ["PORT"]),
        ssl_options=pika.SSLOptions(ctx, "127.0.0.1"), credentials=credentials,
        connection_attempts=1, socket_timeout=5, blocked_connection_timeout=5)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"pika over tls")
    _, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"pika over tls", body
    conn.close()
run(pika.PlainCredentials("guest", "guest"), False)
run(pika.credentials.ExternalCredentials(), True)
print("pika tls ok")
`

// TestTLS_Pika: Python's ssl module and pika (PLAIN and EXTERNAL) against the amqps listener.
func TestTLS_Pika(t *testing.T) {
	probe, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(probe, pikaPython, "-c", "import pika").CombinedOutput(); err != nil {
		clientMissing(t, "pika not installed: %v %s", err, out)
	}
	p := newTestPKI(t)
	addr, _ := tlsBroker(t, p)
	_, port, _ := net.SplitHostPort(addr)
	run, cancelRun := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelRun()
	cmd := exec.CommandContext(run, pikaPython, "-B", "-c", pikaTLSScript)
	cmd.Env = append(os.Environ(), "CA="+p.caFile, "CERT="+p.clientCert, "KEY="+p.clientKy, "PORT="+port)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pika tls ok") {
		t.Fatalf("pika over TLS: %v\n%s", err, out)
	}
}

// TestLimits_NodeMaxConnections: at --max-connections the node stops accepting, as RabbitMQ's
// connection_max: a further client's handshake does not complete until a connection ends.
func TestLimits_NodeMaxConnections(t *testing.T) {
	onlyWarren(t)
	b := setupTenancy(t, &tenancy{}, "--max-connections", "1")
	u := b.url("guest", "guest", "/")
	dialQuick := func() (*amqp.Connection, error) {
		return amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(700 * time.Millisecond)})
	}
	first, err := dialQuick()
	if err != nil {
		t.Fatal(err)
	}
	if c, err := dialQuick(); err == nil {
		c.Close()
		t.Fatal("a second connection completed its handshake at max-connections=1")
	}
	first.Close()
	var second *amqp.Connection
	waitFor(t, func() bool {
		second, err = dialQuick()
		return err == nil
	})
	second.Close()

}

// TestTLS_SIGHUPReloadsCertificates: after the certificate files are replaced and warren gets
// SIGHUP, new TLS connections are served the new certificate, and connections made before
// go on undisturbed (a certificate renewal without a restart).
func TestTLS_SIGHUPReloadsCertificates(t *testing.T) {
	p := newTestPKI(t)
	addr, b := tlsBroker(t, p)
	serial := func() string {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	old, err := amqp.DialTLS("amqps://guest:guest@"+addr+"/", &tls.Config{RootCAs: p.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ch := openChannel(t, old)

	key, _, der := makeCert(t, pkix.Name{CommonName: "127.0.0.1 renewed"}, nil, nil, false, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.write(t, "server.pem", "CERTIFICATE", der)
	p.writeKey(t, "server-key.pem", key)
	if serial() != before {
		t.Fatal("the new certificate was served before SIGHUP")
	}
	if err := b.broker.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for serial() == before {
		if time.Now().After(deadline) {
			t.Fatal("still the old certificate 10 s after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatalf("the connection made before the reload: %v", err)
	}
}
