// Package conformance drives real AMQP clients against a real, started broker.
//
// By default TestMain builds ./cmd/warren, starts it on free loopback ports with a fresh data
// folder and stops it at the end. With CONFORMANCE_URL set (e.g. amqp://guest:guest@127.0.0.1:5672/)
// the same suite runs against that broker instead, which is how we check that the tests encode
// RabbitMQ's behaviour.
package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"
)

var (
	// brokerURL is the AMQP URL of the broker under test (guest/guest, vhost "/").
	brokerURL string
	// amqpAddr is host:port of the broker's AMQP listener, for raw-socket tests.
	amqpAddr string
	// httpAddr is host:port of the broker's HTTP endpoint ("" when unknown).
	httpAddr string
	// againstRabbit is true when the suite runs against an external broker (CONFORMANCE_URL).
	againstRabbit bool
	// warrenBin is the path of the built warren binary ("" against an external broker).
	warrenBin string
)

var nameSeq atomic.Int64

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if u := os.Getenv("CONFORMANCE_URL"); u != "" {
		againstRabbit = true
		brokerURL = u
		pu, err := url.Parse(u)
		if err != nil {
			fmt.Fprintln(os.Stderr, "conformance: bad CONFORMANCE_URL:", err)
			return 2
		}
		amqpAddr = pu.Host
		if h := os.Getenv("CONFORMANCE_HTTP"); h != "" {
			httpAddr = h
		}
	} else if os.Getenv("CONFORMANCE_CLUSTER") != "" {
		stop, err := startWarrenCluster()
		if err != nil {
			fmt.Fprintln(os.Stderr, "conformance:", err)
			return 2
		}
		defer stop()
	} else {
		stop, err := startWarren()
		if err != nil {
			fmt.Fprintln(os.Stderr, "conformance:", err)
			return 2
		}
		defer stop()
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreCurrent()); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: goroutine leak:", err)
			return 1
		}
	}
	return code
}

// startWarren builds cmd/warren into a temp folder and starts it on free loopback ports.
func startWarren() (stop func(), err error) {
	dir, err := os.MkdirTemp("", "warren-conformance-")
	if err != nil {
		return nil, err
	}
	warrenBin = filepath.Join(dir, "warren")
	args := []string{"build", "-o", warrenBin}
	if os.Getenv("CONFORMANCE_RACE") != "" {
		args = append(args, "-race") // the broker itself under the race detector
	}
	build := exec.Command("go", append(args, "../cmd/warren")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build warren: %w", err)
	}
	b, err := StartBroker(filepath.Join(dir, "data"))
	if err != nil {
		return nil, err
	}
	brokerURL = b.URL
	amqpAddr = b.AMQPAddr
	httpAddr = b.HTTPAddr
	return func() {
		b.Stop()
		os.RemoveAll(dir)
	}, nil
}

// startWarrenCluster builds cmd/warren and starts a 3-node cluster on loopback
// (CONFORMANCE_CLUSTER, make conformance-cluster): the suite connects to node 2, and new
// classic queues are spread over the three nodes (--queue-master-locator min-masters), so
// most of what a test does goes through node 2 to a queue that lives on node 1 or 3.
func startWarrenCluster() (stop func(), err error) {
	dir, err := os.MkdirTemp("", "warren-conformance-cluster-")
	if err != nil {
		return nil, err
	}
	warrenBin = filepath.Join(dir, "warren")
	build := exec.Command("go", "build", "-o", warrenBin, "../cmd/warren")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build warren: %w", err)
	}
	key := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("c0ffee", 10)+"abcd"), 0o600); err != nil {
		return nil, err
	}
	const n = 3
	var gossip, rpc [n]string
	for i := range n {
		if gossip[i], err = freeAddr(); err != nil {
			return nil, err
		}
		if rpc[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	type started struct {
		i   int
		b   *Broker
		err error
	}
	done := make(chan started, n)
	for i := range n {
		var join []string
		for j := range n {
			if j != i {
				join = append(join, gossip[j])
			}
		}
		args := []string{"--node-name", fmt.Sprintf("conf-%d", i+1), "--cluster-listen", gossip[i], "--cluster-rpc-listen", rpc[i],
			"--cluster-join", strings.Join(join, ","), "--cluster-expect", "3", "--cluster-key-file", key,
			"--queue-master-locator", "min-masters"}
		go func() {
			b, err := StartBroker(filepath.Join(dir, fmt.Sprintf("node%d", i+1), "data"), args...)
			done <- started{i, b, err}
		}()
	}
	var nodes [n]*Broker
	for range n {
		s := <-done
		nodes[s.i] = s.b
		if s.err != nil && err == nil {
			err = fmt.Errorf("cluster node %d: %w", s.i+1, s.err)
		}
	}
	stopAll := func() {
		for _, b := range nodes {
			if b != nil {
				b.Stop()
			}
		}
		os.RemoveAll(dir)
	}
	if err != nil {
		stopAll()
		return nil, err
	}
	brokerURL, amqpAddr, httpAddr = nodes[1].URL, nodes[1].AMQPAddr, nodes[1].HTTPAddr
	return stopAll, nil
}

// freeAddr returns a loopback address with a port free for TCP and UDP (gossip uses both).
func freeAddr() (string, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("no free port for TCP and UDP")
}

// Broker is a warren process started by the suite.
type Broker struct {
	Cmd      *exec.Cmd
	DataDir  string
	AMQPAddr string
	HTTPAddr string
	URL      string
	done     chan struct{}
}

// StartBroker starts the built warren binary on free loopback ports with the given data folder,
// extra flags appended, and waits until it has written its addresses.
func StartBroker(dataDir string, extra ...string) (*Broker, error) {
	return startBrokerTo(os.Stderr, dataDir, extra...)
}

// startBrokerTo is StartBroker with the broker's output sent to out.
func startBrokerTo(out io.Writer, dataDir string, extra ...string) (*Broker, error) {
	addrFile := filepath.Join(filepath.Dir(dataDir), fmt.Sprintf("addr-%d.json", nameSeq.Add(1)))
	os.Remove(addrFile)
	args := append([]string{"--amqp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--prometheus-listen", "127.0.0.1:0", "--data-dir", dataDir, "--addr-file", addrFile, "--log-level", "warn"}, extra...)
	cmd := exec.Command(warrenBin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &Broker{Cmd: cmd, DataDir: dataDir, done: make(chan struct{})}
	go func() { cmd.Wait(); close(b.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(addrFile)
		if err == nil && len(data) > 0 {
			var a struct{ AMQP, HTTP string }
			if json.Unmarshal(data, &a) == nil && a.AMQP != "" {
				b.AMQPAddr, b.HTTPAddr = a.AMQP, a.HTTP
				b.URL = "amqp://guest:guest@" + a.AMQP + "/"
				return b, nil
			}
		}
		select {
		case <-b.done:
			return nil, fmt.Errorf("warren exited before listening: %v", cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Kill()
			return nil, fmt.Errorf("warren did not write %s within 20s", addrFile)
		}
	}
}

// Stop sends SIGTERM and waits (bounded) for the process to exit.
func (b *Broker) Stop() {
	b.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		b.Kill()
	}
}

// Kill sends SIGKILL (a crash) and waits for the process to exit.
func (b *Broker) Kill() {
	b.Cmd.Process.Kill()
	<-b.done
}

// dial opens a connection to the broker under test, closed when the test ends.
func dial(t testing.TB) *amqp.Connection {
	t.Helper()
	return dialURL(t, brokerURL)
}

// dialURL opens a connection to url, closed when the test ends.
func dialURL(t testing.TB, u string) *amqp.Connection {
	t.Helper()
	c, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openChannel opens a channel on c, closed when the test ends.
func openChannel(t testing.TB, c *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("channel.open: %v", err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

// dialChannel is dial + openChannel.
func dialChannel(t testing.TB) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	c := dial(t)
	return c, openChannel(t, c)
}

// uniqueName returns a resource name derived from the test name, unique within this run, so
// tests never see each other's queues and exchanges (also against a long-running RabbitMQ).
func uniqueName(t testing.TB, suffix ...string) string {
	n := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	n = fmt.Sprintf("conf.%s.%d.%d", n, os.Getpid(), nameSeq.Add(1))
	if len(suffix) > 0 {
		n += "." + strings.Join(suffix, ".")
	}
	return n
}

// ctx returns a context that ends after d (default 5s) or when the test ends.
func ctx(t testing.TB, d ...time.Duration) context.Context {
	timeout := 5 * time.Second
	if len(d) > 0 {
		timeout = d[0]
	}
	c, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return c
}

// amqpErr asserts err is an *amqp.Error with the given reply code.
func amqpErr(t testing.TB, err error, code int) *amqp.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("expected AMQP error %d, got nil", code)
	}
	e, ok := err.(*amqp.Error)
	if !ok {
		t.Fatalf("expected *amqp.Error %d, got %T: %v", code, err, err)
	}
	if e.Code != code {
		t.Fatalf("expected reply code %d, got %d (%s)", code, e.Code, e.Reason)
	}
	return e
}

// waitClose waits (bounded) for the channel or connection close notification and returns it.
func waitClose(t testing.TB, ch <-chan *amqp.Error) *amqp.Error {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no close notification within 5s")
		return nil
	}
}

// recvDelivery waits (bounded) for one delivery.
func recvDelivery(t testing.TB, d <-chan amqp.Delivery) amqp.Delivery {
	t.Helper()
	select {
	case m, ok := <-d:
		if !ok {
			t.Fatal("delivery channel closed")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery within 5s")
	}
	return amqp.Delivery{}
}

// noDelivery asserts nothing arrives on d within wait.
func noDelivery(t testing.TB, d <-chan amqp.Delivery, wait time.Duration) {
	t.Helper()
	select {
	case m, ok := <-d:
		if ok {
			t.Fatalf("unexpected delivery: %q (tag %d)", m.Body, m.DeliveryTag)
		}
	case <-time.After(wait):
	}
}

// rawDial opens a plain TCP connection to the AMQP listener, closed when the test ends.
func rawDial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", amqpAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", amqpAddr, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// onlyWarren skips a test that checks a Warren-only feature when running against RabbitMQ.
func onlyWarren(t testing.TB) {
	t.Helper()
	if againstRabbit {
		t.Skip("Warren-only behaviour (RabbitMQ lacks it)")
	}
}

// clientMissing skips a test whose client or tool is not installed, or fails it when
// CONFORMANCE_REQUIRE_CLIENTS is set (CI installs every client: a skip there would hide a
// suite that did not run).
func clientMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CONFORMANCE_REQUIRE_CLIENTS") != "" {
		t.Fatalf("CONFORMANCE_REQUIRE_CLIENTS is set, but: "+format, args...)
	}
	t.Skipf(format, args...)
}
