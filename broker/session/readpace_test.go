package session

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A window of quick small reads engages pacing: the socket's low-water mark is raised to
// about paceBatch of the measured rate. Bytes that stay below the mark are still read (the
// deadline), everything written arrives intact, and stop() lowers the mark again.
func TestReadPacer_EngagesOnStreamOfSmallReads(t *testing.T) {
	if !paceSupported {
		t.Skip("read pacing is Linux-only")
	}
	client, server := tcpPair(t)
	p := newReadPacer(server)
	if p.raw == nil {
		t.Fatal("a TCP connection should be pacable")
	}
	for i := 0; i < paceWindowReads; i++ { // 64 reads of 72 bytes within microseconds
		p.observe(72)
	}
	if p.engaged != 1 || p.mark <= 1 {
		t.Fatalf("engaged %d, mark %d after a window of quick small reads", p.engaged, p.mark)
	}
	if got := lowat(t, p); got != p.mark {
		t.Fatalf("SO_RCVLOWAT %d, want the mark %d", got, p.mark)
	}
	// A slow window (reads far apart) does not engage.
	q := newReadPacer(server)
	q.winReads, q.winStart = 1, time.Now().Add(-time.Second)
	for i := 1; i < paceWindowReads; i++ {
		q.observe(72)
	}
	if q.engaged != 0 {
		t.Fatal("a slow window engaged pacing")
	}

	// A stream of writes arrives whole while paced.
	msg := make([]byte, 72)
	const msgs = 5000
	go func() {
		for i := 0; i < msgs; i++ {
			msg[0] = byte(i)
			client.Write(msg)
		}
	}()
	buf := make([]byte, 16<<10)
	total := 0
	for total < msgs*len(msg) {
		n, err := p.read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", total, err)
		}
		total += n
	}
	// A lone write below the mark still arrives, within the deadline's bound.
	if p.mark <= 1 {
		p.setMark(4096)
	}
	start := time.Now()
	go func() {
		time.Sleep(2 * time.Millisecond)
		client.Write(msg[:10])
	}()
	n, err := p.read(buf)
	if err != nil || n != 10 {
		t.Fatalf("lone write: n=%d err=%v", n, err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("lone write took %v", d)
	}
	p.stop()
	if p.mark > 1 || lowat(t, p) != 1 {
		t.Fatalf("mark %d / SO_RCVLOWAT %d after stop", p.mark, lowat(t, p))
	}
	client.Close()
	if _, err := p.read(buf); err != io.EOF {
		t.Fatalf("read after close: %v", err)
	}
}

func lowat(t *testing.T, p *readPacer) int {
	t.Helper()
	var v int
	var gerr error
	p.raw.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// After a stream, a client that sends a little and waits for an answer (a confirm window, an
// RPC) must not wait on the mark: each request arrives within the deadline's bound, and pacing
// stops after a few such rounds.
func TestReadPacer_RequestResponseStopsPacing(t *testing.T) {
	if !paceSupported {
		t.Skip("read pacing is Linux-only")
	}
	client, server := tcpPair(t)
	p := newReadPacer(server)
	// Engage directly at a mark far above what a request carries.
	if !p.setMark(8192) {
		t.Fatal("setMark failed")
	}
	p.engaged++
	buf := make([]byte, 16<<10)
	req := make([]byte, 100)
	start := time.Now()
	for round := 0; round < 10; round++ {
		t0 := time.Now()
		go func() {
			time.Sleep(2 * time.Millisecond) // the reader waits first, as for a real request
			client.Write(req)
		}()
		got := 0
		for got < len(req) {
			n, err := p.read(buf)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			got += n
		}
		if d := time.Since(t0); d > 50*time.Millisecond {
			t.Fatalf("round %d: request took %v to read", round, d)
		}
	}
	if p.mark > 1 {
		t.Fatalf("still pacing (mark %d) after 10 request/response rounds", p.mark)
	}
	if p.paused == 0 {
		t.Fatal("pacing never paused")
	}
	t.Logf("10 rounds in %v", time.Since(start))
}

// sysWrite writes the whole buffer across partial writes and EAGAIN while the peer reads slowly.
func TestSysWrite_LargeBufferSlowReader(t *testing.T) {
	if !paceSupported {
		t.Skip("raw socket I/O is Linux-only")
	}
	client, server := tcpPair(t)
	p := newReadPacer(server)
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		var all []byte
		b := make([]byte, 64<<10)
		for {
			n, err := client.Read(b)
			all = append(all, b[:n]...)
			if err != nil {
				got <- all
				return
			}
			if len(all) < 1<<20 {
				time.Sleep(time.Millisecond) // slow at first: the writer meets a full buffer
			}
		}
	}()
	n, err := p.sysWrite(data)
	if err != nil || n != len(data) {
		t.Fatalf("sysWrite: n=%d err=%v", n, err)
	}
	server.Close()
	all := <-got
	if len(all) != len(data) {
		t.Fatalf("peer read %d bytes, want %d", len(all), len(data))
	}
	for i := range all {
		if all[i] != data[i] {
			t.Fatalf("byte %d differs", i)
		}
	}
	// Writing to a closed socket reports an error.
	if _, err := p.sysWrite([]byte("x")); err == nil {
		t.Fatal("write after close succeeded")
	}
}

// Under TLS the pacing and the raw I/O sit below the tls.Conn: bytes round-trip both ways,
// the connection's pacer finds the TCP connection's, and stop() reaches it.
func TestPacedConn_UnderTLS(t *testing.T) {
	if !paceSupported {
		t.Skip("read pacing is Linux-only")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	client, server := tcpPair(t)
	pc := PacedConn(server)
	inner, ok := pc.(*pacedConn)
	if !ok {
		t.Fatalf("PacedConn of a TCP connection is %T", pc)
	}
	srv := tls.Server(pc, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	cli := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	p := newReadPacer(srv)
	if p.inner != inner.p || p.raw != nil {
		t.Fatal("the TLS connection's pacer does not lead to the TCP connection's")
	}
	go func() {
		for i := 0; i < 200; i++ {
			cli.Write([]byte("0123456789abcdef"))
		}
	}()
	buf := make([]byte, 4096)
	got := 0
	for got < 200*16 {
		n, err := p.read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got, err)
		}
		got += n
	}
	reply := make([]byte, 300<<10) // bigger than one raw write chunk
	go srv.Write(reply)
	back := 0
	for back < len(reply) {
		n, err := cli.Read(buf)
		if err != nil {
			t.Fatalf("client read after %d bytes: %v", back, err)
		}
		back += n
	}
	inner.p.setMark(2048)
	p.stop()
	if inner.p.mark > 1 || !inner.p.off {
		t.Fatalf("stop did not reach the TCP connection's pacer (mark %d)", inner.p.mark)
	}
	// Not a TCP connection: returned as is.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if PacedConn(a) != a {
		t.Fatal("a pipe was wrapped")
	}
}
