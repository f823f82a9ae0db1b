package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 with serial to cert and key.
func writeSelfSigned(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "warren"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written to temporary files and renamed: what a certificate renewal does.
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(file+".new", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".new", file); err != nil {
			t.Fatal(err)
		}
	}
}

// The certificate a TLS client is served after reloadTLS is the one in the files now;
// connections made before keep working; a broken file keeps the old certificate.
func TestSecurityFlags_ReloadTLSCertificates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, 1)
	f := &securityFlags{tlsCert: certFile, tlsKey: keyFile, httpTLS: true}
	if err := f.prepare(); err != nil {
		t.Fatal(err)
	}
	amqps, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer amqps.Close()
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	https := f.wrapHTTP(hln)
	defer https.Close()
	for _, ln := range []net.Listener{tls.NewListener(amqps, f.tls), https} {
		go func() { // echo server
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 64)
					for {
						n, err := c.Read(buf)
						if err != nil {
							return
						}
						c.Write(buf[:n])
					}
				}()
			}
		}()
	}
	dial := func(addr string) (*tls.Conn, int64) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return c, c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	echo := func(c *tls.Conn) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := c.Read(buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q %v", buf, err)
		}
	}
	old, serial := dial(amqps.Addr().String())
	defer old.Close()
	if serial != 1 {
		t.Fatalf("serial %d before the reload", serial)
	}
	writeSelfSigned(t, certFile, keyFile, 2)
	if err := f.reloadTLS(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{amqps.Addr().String(), hln.Addr().String()} {
		c, serial := dial(addr)
		echo(c)
		c.Close()
		if serial != 2 {
			t.Fatalf("%s: serial %d after the reload, want 2", addr, serial)
		}
	}
	echo(old) // the connection made before the reload goes on
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.reloadTLS(); err == nil {
		t.Fatal("reload with a broken key: no error")
	}
	c, serial := dial(amqps.Addr().String())
	c.Close()
	if serial != 2 {
		t.Fatalf("serial %d after a failed reload, want 2 (kept)", serial)
	}
}
