package conformance

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// tenancy describes users, vhosts and permissions for a security test, in RabbitMQ's
// definitions format. Against Warren it is loaded with --definitions into a broker started for
// the test; against RabbitMQ it is imported through the management API (POST /api/definitions)
// and deleted when the test ends.
type tenancy struct {
	Users            []defUser      `json:"users"`
	VHosts           []defVHost     `json:"vhosts"`
	Permissions      []defPerm      `json:"permissions"`
	TopicPermissions []defTopicPerm `json:"topic_permissions"`
	Parameters       []defParam     `json:"parameters"`
}

type defUser struct {
	Name             string         `json:"name"`
	PasswordHash     string         `json:"password_hash"`
	HashingAlgorithm string         `json:"hashing_algorithm"`
	Tags             []string       `json:"tags"`
	Limits           map[string]int `json:"limits"`
}

type defVHost struct {
	Name string `json:"name"`
}

type defPerm struct {
	User      string `json:"user"`
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

type defTopicPerm struct {
	User     string `json:"user"`
	VHost    string `json:"vhost"`
	Exchange string `json:"exchange"`
	Write    string `json:"write"`
	Read     string `json:"read"`
}

type defParam struct {
	VHost     string         `json:"vhost"`
	Component string         `json:"component"`
	Name      string         `json:"name"`
	Value     map[string]int `json:"value"`
}

// rabbitHash is RabbitMQ's rabbit_password_hashing_sha256: base64(salt(4) + sha256(salt + password)).
// Both brokers must accept a hash computed here.
func rabbitHash(password string) string {
	salt := make([]byte, 4)
	rand.Read(salt)
	h := sha256.Sum256(append(append([]byte{}, salt...), password...))
	return base64.StdEncoding.EncodeToString(append(salt, h[:]...))
}

// secName returns a user or vhost name unique to this test run (RabbitMQ outlives the run).
func secName(t testing.TB, base string) string {
	return fmt.Sprintf("%s-%d-%d", base, os.Getpid(), nameSeq.Add(1))
}

func (tn *tenancy) user(name, password string, limits map[string]int) {
	tn.Users = append(tn.Users, defUser{Name: name, PasswordHash: rabbitHash(password), HashingAlgorithm: "rabbit_password_hashing_sha256", Tags: []string{}, Limits: limits})
}

func (tn *tenancy) vhost(name string, limits map[string]int) {
	tn.VHosts = append(tn.VHosts, defVHost{Name: name})
	if limits != nil {
		tn.Parameters = append(tn.Parameters, defParam{VHost: name, Component: "vhost-limits", Name: "limits", Value: limits})
	}
}

func (tn *tenancy) perm(user, vhost, configure, write, read string) {
	tn.Permissions = append(tn.Permissions, defPerm{User: user, VHost: vhost, Configure: configure, Write: write, Read: read})
}

func (tn *tenancy) topicPerm(user, vhost, x, write, read string) {
	tn.TopicPermissions = append(tn.TopicPermissions, defTopicPerm{User: user, VHost: vhost, Exchange: x, Write: write, Read: read})
}

// secBroker is the broker a security test talks to.
type secBroker struct {
	amqpAddr string // host:port
	httpAddr string // host:port of the management API ("" when unknown)
	broker   *Broker
}

// url returns the AMQP URL for user/password on vhost.
func (b *secBroker) url(user, password, vhost string) string {
	return "amqp://" + url.UserPassword(user, password).String() + "@" + b.amqpAddr + "/" + url.PathEscape(vhost)
}

// setupTenancy makes the definitions exist on the broker under test and returns it. Against
// Warren, extra flags go to the dedicated broker.
func setupTenancy(t *testing.T, tn *tenancy, extra ...string) *secBroker {
	t.Helper()
	// RabbitMQ's import refuses null where it expects a list or an object.
	if tn.Users == nil {
		tn.Users = []defUser{}
	}
	for i := range tn.Users {
		if tn.Users[i].Limits == nil {
			tn.Users[i].Limits = map[string]int{}
		}
	}
	if tn.VHosts == nil {
		tn.VHosts = []defVHost{}
	}
	if tn.Permissions == nil {
		tn.Permissions = []defPerm{}
	}
	if tn.TopicPermissions == nil {
		tn.TopicPermissions = []defTopicPerm{}
	}
	if tn.Parameters == nil {
		tn.Parameters = []defParam{}
	}
	data, err := json.Marshal(tn)
	if err != nil {
		t.Fatal(err)
	}
	if againstRabbit {
		h := rabbitHTTP()
		t.Cleanup(func() {
			for _, v := range tn.VHosts {
				rabbitAPI(t, "DELETE", "/api/vhosts/"+url.PathEscape(v.Name), nil)
			}
			for _, u := range tn.Users {
				rabbitAPI(t, "DELETE", "/api/users/"+url.PathEscape(u.Name), nil)
			}
		})
		if code, body := rabbitAPI(t, "POST", "/api/definitions", data); code/100 != 2 {
			t.Fatalf("importing definitions into RabbitMQ: %d %s", code, body)
		}
		return &secBroker{amqpAddr: amqpAddr, httpAddr: h}
	}
	dir := t.TempDir()
	defs := filepath.Join(dir, "definitions.json")
	if err := os.WriteFile(defs, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBroker(filepath.Join(dir, "data"), append([]string{"--definitions", defs}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return &secBroker{amqpAddr: b.AMQPAddr, httpAddr: b.HTTPAddr, broker: b}
}

// rabbitHTTP is the management API of the RabbitMQ under test.
func rabbitHTTP() string {
	if httpAddr != "" {
		return httpAddr
	}
	return "127.0.0.1:15672"
}

// rabbitAPI calls RabbitMQ's management API as guest and returns the status and body.
func rabbitAPI(t testing.TB, method, path string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+rabbitHTTP()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dialErr dials u and returns the error (a successful connection is closed at the end of the test).
func dialErr(t testing.TB, u string) error {
	t.Helper()
	c, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return err
}

// wantErrText asserts err is an AMQP error with code and exactly text.
func wantErrText(t testing.TB, err error, code int, text string) {
	t.Helper()
	e := amqpErr(t, err, code)
	if e.Reason != text {
		t.Fatalf("reply text:\n got  %q\n want %q", e.Reason, text)
	}
}

// chanErr runs f on a fresh channel of c and returns the error that closed the channel (nil
// when f succeeded and the channel is still open).
func chanErr(t testing.TB, c *amqp.Connection, f func(ch *amqp.Channel) error) error {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("channel.open: %v", err)
	}
	defer ch.Close()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := f(ch); err != nil {
		return err
	}
	// A publish fails asynchronously: a round trip shows whether the channel survived.
	if err := ch.ExchangeDeclarePassive("amq.direct", "direct", true, false, false, false, nil); err != nil {
		select {
		case e := <-closed:
			if e != nil {
				return e
			}
		case <-time.After(5 * time.Second):
		}
		return err
	}
	return nil
}

// mgmtCall calls the management API of the broker under test as guest (RabbitMQ's, or
// Warren's on the test's own broker) and returns the status and body.
func mgmtCall(t testing.TB, b *secBroker, method, path string) (int, string) {
	t.Helper()
	if againstRabbit {
		return rabbitAPI(t, method, path, nil)
	}
	if b.httpAddr == "" {
		return 404, "no HTTP listener"
	}
	req, err := http.NewRequest(method, "http://"+b.httpAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
