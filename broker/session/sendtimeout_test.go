package session

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"
)

// smallBuffers shrinks both socket buffers so that a few hundred KiB fill the path.
func smallBuffers(t *testing.T, client, server net.Conn) {
	t.Helper()
	client.(*net.TCPConn).SetReadBuffer(16 << 10)
	server.(*net.TCPConn).SetWriteBuffer(16 << 10)
}

// A peer that reads nothing fails the write after the send timeout, not before, and not
// much after; bytes that did go out are counted.
func TestSysWrite_SendTimeoutWithoutProgress(t *testing.T) {
	if !paceSupported {
		t.Skip("raw socket writes are Linux-only")
	}
	client, server := tcpPair(t)
	smallBuffers(t, client, server)
	p := newReadPacer(server)
	p.setSendTimeout(300 * time.Millisecond)
	start := time.Now()
	n, err := p.sysWrite(make([]byte, 8<<20))
	took := time.Since(start)
	if !errors.Is(err, errSendTimeout) {
		t.Fatalf("err %v, want errSendTimeout", err)
	}
	if n <= 0 || n >= 8<<20 {
		t.Fatalf("wrote %d bytes", n)
	}
	if took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("timed out after %v, want about 300ms", took)
	}
}

// A slow reader that keeps taking bytes is not cut off, however long the whole write takes;
// and a write after one that waited does not trip over the old deadline.
func TestSysWrite_SlowReaderKeepsGoing(t *testing.T) {
	if !paceSupported {
		t.Skip("raw socket writes are Linux-only")
	}
	client, server := tcpPair(t)
	smallBuffers(t, client, server)
	p := newReadPacer(server)
	p.setSendTimeout(250 * time.Millisecond)
	const total = 1 << 20
	read := make(chan int, 1)
	go func() {
		buf := make([]byte, 32<<10)
		got := 0
		for got < total+1 {
			time.Sleep(40 * time.Millisecond)
			n, err := client.Read(buf)
			got += n
			if err != nil {
				break
			}
		}
		read <- got
	}()
	start := time.Now()
	if n, err := p.sysWrite(make([]byte, total)); err != nil || n != total {
		t.Fatalf("slow but steady reader: n=%d err=%v", n, err)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Logf("the write took only %v: the reader was not slow enough to test much", took)
	}
	time.Sleep(400 * time.Millisecond) // past the deadline the write above armed
	if n, err := p.sysWrite([]byte("x")); err != nil || n != 1 {
		t.Fatalf("write after a waited write: n=%d err=%v", n, err)
	}
	if got := <-read; got != total+1 {
		t.Fatalf("peer read %d bytes, want %d", got, total+1)
	}
}

// Under TLS the paced TCP connection below enforces the send timeout; on other connections
// (a pipe) Conn.write sets a deadline per chunk.
func TestConnWrite_SendTimeoutUnderTLSAndPipes(t *testing.T) {
	if !paceSupported {
		t.Skip("raw socket writes are Linux-only")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	client, server := tcpPair(t)
	smallBuffers(t, client, server)
	srv := tls.Server(PacedConn(server), &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	cli := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	hs := make(chan error, 1)
	go func() { hs <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	for name, nc := range map[string]net.Conn{"tls": srv, "pipe": pipeEnd(t)} {
		c := &Conn{nc: nc, pacer: newReadPacer(nc)}
		c.pacer.setSendTimeout(300 * time.Millisecond)
		start := time.Now()
		_, err := c.write(make([]byte, 8<<20))
		if !errors.Is(err, errSendTimeout) {
			t.Fatalf("%s: err %v, want errSendTimeout", name, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("%s: timed out after %v", name, took)
		}
	}
}

// pipeEnd returns one end of a pipe whose other end never reads.
func pipeEnd(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}
