package session

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func TestCertUser_NameFromSubject(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "app-1", Organization: []string{"Example"}, OrganizationalUnit: []string{"Ops"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	verified := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	for _, c := range []struct {
		st         tls.ConnectionState
		from, want string
		refused    bool
	}{
		{st: verified, from: "", want: "CN=app-1,OU=Ops,O=Example"}, // RabbitMQ's default: distinguished_name
		{st: verified, from: "distinguished_name", want: "CN=app-1,OU=Ops,O=Example"},
		{st: verified, from: "common_name", want: "app-1"},
		{st: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}, refused: true}, // not verified
		{st: tls.ConnectionState{}, refused: true},                                            // no certificate
	} {
		user, reason := certUser(c.st, c.from)
		if c.refused != (reason != "") || user != c.want {
			t.Errorf("from %q: user %q reason %q, want %q refused=%v", c.from, user, reason, c.want, c.refused)
		}
	}
}
