package conformance

// Metadata durability: users, vhosts, permissions, topic permissions, limits, policies,
// exchanges, queues and bindings survive restarts and crashes, deletes stay deleted, an
// older version's files are taken over, and definitions round-trip with RabbitMQ's
// (https://www.rabbitmq.com/definitions.html: export, then import at boot with
// load_definitions).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// api calls the management API at addr as guest and returns the status and body.
func api(t testing.TB, addr, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// mustAPI is api that fails the test unless the status is 2xx.
func mustAPI(t testing.TB, addr, method, path, body string) string {
	t.Helper()
	code, out := api(t, addr, method, path, body)
	if code/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, code, out)
	}
	return out
}

// defsSize returns the bytes of the metadata log's segment files (DATA_DIR/wal/defs).
func defsSize(t *testing.T, dataDir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(dataDir, "wal", "defs"), func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := e.Info(); err == nil && !e.IsDir() {
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDefinitions_DeletedPolicyStaysDeletedAfterRestart: a policy deleted through the HTTP API
// is not back after a restart, also when a user was changed while it existed (issue 11: the
// users file used to carry a copy of the policies, and restored them).
func TestDefinitions_DeletedPolicyStaysDeletedAfterRestart(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	b := durBroker(t, dir)
	mustAPI(t, b.HTTPAddr, "PUT", "/api/policies/%2F/short", `{"pattern":"^short\\.","apply-to":"queues","definition":{"max-length":1}}`)
	mustAPI(t, b.HTTPAddr, "PUT", "/api/users/pol-user", `{"password":"pw","tags":""}`)
	mustAPI(t, b.HTTPAddr, "DELETE", "/api/policies/%2F/short", "")
	b.Stop()
	b = durBroker(t, dir)
	if code, body := api(t, b.HTTPAddr, "GET", "/api/policies/%2F/short", ""); code != 404 {
		t.Fatalf("deleted policy after a restart: %d %s", code, body)
	}
	if code, _ := api(t, b.HTTPAddr, "GET", "/api/users/pol-user", ""); code != 200 {
		t.Fatalf("user after a restart: %d", code)
	}
}

// restartDefs is a definitions document with one of everything (in vhost v, user u).
func restartDefs(v, u string) string {
	return fmt.Sprintf(`{
	  "users": [{"name":%[2]q,"password_hash":%[3]q,"hashing_algorithm":"rabbit_password_hashing_sha256","tags":["monitoring"],"limits":{"max-connections":7}},
	            {"name":"gone-user","password_hash":%[3]q,"hashing_algorithm":"rabbit_password_hashing_sha256","tags":[],"limits":{}}],
	  "vhosts": [{"name":%[1]q},{"name":"gone-vhost"}],
	  "permissions": [{"user":%[2]q,"vhost":%[1]q,"configure":"^(?!amq\\.).*","write":".*","read":".*"},
	                  {"user":"guest","vhost":%[1]q,"configure":".*","write":".*","read":".*"},
	                  {"user":"guest","vhost":"gone-vhost","configure":".*","write":".*","read":".*"},
	                  {"user":"gone-user","vhost":%[1]q,"configure":".*","write":".*","read":".*"}],
	  "topic_permissions": [{"user":%[2]q,"vhost":%[1]q,"exchange":"amq.topic","write":"^a\\.","read":".*"},
	                        {"user":"guest","vhost":%[1]q,"exchange":"amq.topic","write":"^gone","read":".*"}],
	  "parameters": [{"vhost":%[1]q,"component":"vhost-limits","name":"limits","value":{"max-queues":50}}],
	  "policies": [{"vhost":%[1]q,"name":"kept","pattern":"^(?!amq\\.).*","apply-to":"queues","priority":1,"definition":{"message-ttl":60000,"ha-mode":"all"}},
	               {"vhost":%[1]q,"name":"gone","pattern":"^g","apply-to":"all","priority":0,"definition":{"max-length":3}}],
	  "queues": [{"name":"kept-q","vhost":%[1]q,"durable":true,"auto_delete":false,"arguments":{"x-max-length":9}},
	             {"name":"gone-q","vhost":%[1]q,"durable":true,"auto_delete":false,"arguments":{}}],
	  "exchanges": [{"name":"kept-x","vhost":%[1]q,"type":"topic","durable":true,"auto_delete":false,"internal":false,"arguments":{}}],
	  "bindings": [{"source":"kept-x","vhost":%[1]q,"destination":"kept-q","destination_type":"queue","routing_key":"a.#","arguments":{}},
	               {"source":"kept-x","vhost":%[1]q,"destination":"gone-q","destination_type":"queue","routing_key":"b","arguments":{}}]
	}`, v, u, rabbitHash("pw"))
}

// TestDefinitions_RestartKeepsMetadataAndDeletes: everything imported and changed through the
// HTTP API is there after a clean restart and after a kill -9, and what was deleted stays
// deleted (a user, a vhost, a permission, a topic permission, a policy, a queue).
func TestDefinitions_RestartKeepsMetadataAndDeletes(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	b := durBroker(t, dir)
	v, u := "kept-vhost", "kept-user"
	ev := url.PathEscape(v)
	mustAPI(t, b.HTTPAddr, "POST", "/api/definitions", restartDefs(v, u))
	mustAPI(t, b.HTTPAddr, "DELETE", "/api/users/gone-user", "")
	mustAPI(t, b.HTTPAddr, "DELETE", "/api/vhosts/gone-vhost", "")
	mustAPI(t, b.HTTPAddr, "DELETE", "/api/policies/"+ev+"/gone", "")
	mustAPI(t, b.HTTPAddr, "DELETE", "/api/queues/"+ev+"/gone-q", "")
	mustAPI(t, b.HTTPAddr, "DELETE", "/api/permissions/"+ev+"/guest", "")
	want := exportOf(t, b.HTTPAddr)
	for _, check := range []struct{ what, in string }{
		{`"name":"gone-user"`, "users"}, {`"name":"gone-vhost"`, "vhosts"}, {`"name":"gone"`, "policies"},
		{`"name":"gone-q"`, "queues"}, {`"destination":"gone-q"`, "bindings"}, {`"user":"guest","vhost":"kept-vhost"`, "permissions"},
	} {
		if strings.Contains(want[check.in], check.what) {
			t.Fatalf("deleted %s still in %s: %s", check.what, check.in, want[check.in])
		}
	}
	for i, stop := range []func(){b.Stop, b.Kill} {
		stop()
		b = durBroker(t, dir)
		got := exportOf(t, b.HTTPAddr)
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if got[k] != want[k] {
				t.Errorf("restart %d: %s\n got  %s\n want %s", i+1, k, got[k], want[k])
			}
		}
		sb := &secBroker{amqpAddr: b.AMQPAddr}
		if err := dialErr(t, sb.url(u, "pw", v)); err != nil {
			t.Fatalf("restart %d: %s cannot connect: %v", i+1, u, err)
		}
		if err := dialErr(t, sb.url("gone-user", "pw", v)); err == nil {
			t.Fatalf("restart %d: the deleted user connected", i+1)
		}
	}
}

// exportOf returns GET /api/definitions as one normalised JSON text per key (lists sorted).
func exportOf(t *testing.T, addr string) map[string]string {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal([]byte(mustAPI(t, addr, "GET", "/api/definitions", "")), &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range d {
		if l, ok := v.([]any); ok {
			items := make([]string, len(l))
			for i, e := range l {
				b, _ := json.Marshal(e)
				items[i] = string(b)
			}
			slices.Sort(items)
			out[k] = "[" + strings.Join(items, ",") + "]"
		}
	}
	return out
}

// TestDefinitions_RestartsDoNotGrowTheLog: restarting a node whose metadata does not change
// writes nothing to the metadata log, also when it imports the same definitions file at every
// start (--definitions) with everything in it already so.
func TestDefinitions_RestartsDoNotGrowTheLog(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	file := filepath.Join(filepath.Dir(dir), "definitions.json")
	if err := os.WriteFile(file, []byte(restartDefs("file-vhost", "file-user")), 0o600); err != nil {
		t.Fatal(err)
	}
	b := durBroker(t, dir, "--definitions", file)
	mustAPI(t, b.HTTPAddr, "PUT", "/api/policies/%2F/grow", `{"pattern":"^g","definition":{"max-length":3}}`)
	mustAPI(t, b.HTTPAddr, "PUT", "/api/users/grow-plain", `{"password":"pw","tags":"management"}`)
	b.Stop()
	size := defsSize(t, dir)
	for i := range 4 {
		b = durBroker(t, dir, "--definitions", file)
		for _, p := range []string{"/api/policies/%2F/grow", "/api/policies/file-vhost/kept", "/api/users/grow-plain"} {
			if code, _ := api(t, b.HTTPAddr, "GET", p, ""); code != 200 {
				t.Fatalf("restart %d: GET %s: %d", i+1, p, code)
			}
		}
		b.Stop()
		if got := defsSize(t, dir); got != size {
			t.Fatalf("restart %d: the metadata log went from %d to %d bytes\n%s", i+1, size, got, durTree(filepath.Join(dir, "wal", "defs")))
		}
	}
}

// TestDefinitions_ImportsAnOlderVersionsUsersFile: a data folder of an older version, which
// kept users, vhosts, permissions and limits in DATA_DIR/security.json, keeps them: the file is
// imported once into the metadata log and renamed aside. Policies were never its to keep (the
// definitions log was their home): one only the file holds is not brought back.
func TestDefinitions_ImportsAnOlderVersionsUsersFile(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf(`{
	  "rabbit_version": "3.10.8",
	  "users": [{"name":"guest","password_hash":%[1]q,"hashing_algorithm":"rabbit_password_hashing_sha256","tags":["administrator"],"limits":{}},
	            {"name":"legacy","password_hash":%[2]q,"hashing_algorithm":"rabbit_password_hashing_sha256","tags":["management"],"limits":{"max-connections":3}}],
	  "vhosts": [{"name":"/"},{"name":"legacy-vh"}],
	  "permissions": [{"user":"guest","vhost":"/","configure":".*","write":".*","read":".*"},
	                  {"user":"legacy","vhost":"legacy-vh","configure":".*","write":".*","read":".*"}],
	  "topic_permissions": [{"user":"legacy","vhost":"legacy-vh","exchange":"amq.topic","write":"^l\\.","read":".*"}],
	  "parameters": [{"vhost":"legacy-vh","component":"vhost-limits","name":"limits","value":{"max-connections":5}}],
	  "policies": [{"vhost":"legacy-vh","name":"deleted-long-ago","pattern":".*","apply-to":"all","priority":0,"definition":{"max-length":1}}]
	}`, rabbitHash("guest"), rabbitHash("old-pw"))
	if err := os.WriteFile(filepath.Join(dir, "security.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	b := durBroker(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "security.json")); err == nil {
		t.Fatal("security.json still in place after the import")
	}
	if _, err := os.Stat(filepath.Join(dir, "security.json.imported")); err != nil {
		t.Fatalf("imported file not kept aside: %v", err)
	}
	for i := range 2 {
		sb := &secBroker{amqpAddr: b.AMQPAddr}
		if err := dialErr(t, sb.url("legacy", "old-pw", "legacy-vh")); err != nil {
			t.Fatalf("start %d: the older version's user cannot connect: %v", i+1, err)
		}
		d := exportOf(t, b.HTTPAddr)
		for _, w := range []struct{ in, what string }{
			{"users", `"max-connections":3`}, {"topic_permissions", `"write":"^l\\.`}, {"parameters", `"max-connections":5`},
		} {
			if !strings.Contains(d[w.in], w.what) {
				t.Errorf("start %d: %s lacks %s: %s", i+1, w.in, w.what, d[w.in])
			}
		}
		if strings.Contains(d["policies"], "deleted-long-ago") {
			t.Errorf("start %d: a policy only the users file held came back", i+1)
		}
		b.Stop()
		b = durBroker(t, dir)
	}
}

// TestDefinitions_Kill9LosesNothingAnswered changes metadata from several clients (durable
// queues and bindings over AMQP, users and policies over HTTP, creating and deleting) and
// kills the broker at a random moment, three times: after each restart, every change that was
// answered is there (a create that was answered exists unless a later delete was answered; an
// answered delete stays deleted); only the changes in flight at the kill may go either way.
func TestDefinitions_Kill9LosesNothingAnswered(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>32))
	t.Logf("seed %d", seed)
	dir := durDataDir(t)
	st := &metaState{known: map[string]bool{}}
	rounds := 3
	if testing.Short() {
		rounds = 2
	}
	for r := range rounds {
		b := durBroker(t, dir)
		st.verify(t, b, r)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() { st.work(b, r, w, stop) })
		}
		time.Sleep(200*time.Millisecond + time.Duration(rng.Int64N(int64(600*time.Millisecond))))
		b.Kill()
		close(stop)
		wg.Wait()
		t.Logf("round %d: %d changes answered, %d in flight at the kill", r+1, st.answered, len(st.unsure))
	}
	b := durBroker(t, dir)
	st.verify(t, b, rounds)
	if st.answered < 20 {
		t.Errorf("only %d changes were answered: the test checked little", st.answered)
	}
}

// metaState is what clients were told about each entity ("queue:name", "binding:name",
// "user:name", "policy:name"): present or absent; unsure ones had a change in flight.
type metaState struct {
	mu       sync.Mutex
	known    map[string]bool
	unsure   []string
	answered int
}

func (s *metaState) begin(keys ...string) {
	s.mu.Lock()
	s.unsure = append(s.unsure, keys...)
	s.mu.Unlock()
}

func (s *metaState) done(present bool, keys ...string) {
	s.mu.Lock()
	s.answered++
	for _, key := range keys {
		s.known[key] = present
		if i := slices.Index(s.unsure, key); i >= 0 {
			s.unsure = slices.Delete(s.unsure, i, i+1)
		}
	}
	s.mu.Unlock()
}

// work creates a queue bound to amq.direct, a user and a policy per step, and deletes those
// of two steps before, until stop or the broker is gone.
func (s *metaState) work(b *Broker, round, w int, stop <-chan struct{}) {
	c, err := amqp.Dial(b.URL)
	if err != nil {
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	call := func(method, path, body string) bool {
		req, _ := http.NewRequest(method, "http://"+b.HTTPAddr+path, strings.NewReader(body))
		req.SetBasicAuth("guest", "guest")
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode/100 == 2
	}
	name := func(i int) string { return fmt.Sprintf("crash-%d-%d-%d", round, w, i) }
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		n := name(i)
		type step struct {
			keys    []string // entities the change is about
			present bool
			ok      func() bool
		}
		steps := []step{
			{[]string{"queue:" + n}, true, func() bool { _, err := ch.QueueDeclare(n, true, false, false, false, nil); return err == nil }},
			{[]string{"binding:" + n}, true, func() bool { return ch.QueueBind(n, n, "amq.direct", false, nil) == nil }},
			{[]string{"user:" + n}, true, func() bool { return call("PUT", "/api/users/"+n, `{"password":"pw","tags":""}`) }},
			{[]string{"policy:" + n}, true, func() bool {
				return call("PUT", "/api/policies/%2F/"+n, `{"pattern":"^`+n+`$","definition":{"max-length":5}}`)
			}},
		}
		if i >= 2 {
			old := name(i - 2)
			steps = append(steps,
				step{[]string{"user:" + old}, false, func() bool { return call("DELETE", "/api/users/"+old, "") }},
				step{[]string{"policy:" + old}, false, func() bool { return call("DELETE", "/api/policies/%2F/"+old, "") }},
				step{[]string{"queue:" + old, "binding:" + old}, false, func() bool { // the binding goes with its queue
					_, err := ch.QueueDelete(old, false, false, false)
					return err == nil
				}},
			)
		}
		for _, st := range steps {
			s.begin(st.keys...)
			if !st.ok() {
				return // the broker is gone: this change stays unsure
			}
			s.done(st.present, st.keys...)
		}
	}
}

// verify checks every entity whose last change was answered.
func (s *metaState) verify(t *testing.T, b *Broker, round int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	unsure := map[string]bool{}
	for _, k := range s.unsure {
		unsure[k] = true
	}
	var bindings []map[string]any
	if err := json.Unmarshal([]byte(mustAPI(t, b.HTTPAddr, "GET", "/api/bindings/%2F", "")), &bindings); err != nil {
		t.Fatal(err)
	}
	bound := map[string]bool{}
	for _, bd := range bindings {
		if bd["source"] == "amq.direct" {
			bound[fmt.Sprint(bd["destination"])] = true
		}
	}
	c := dialURL(t, b.URL)
	checked := 0
	for _, key := range s.unsure {
		if _, ok := s.known[key]; !ok {
			s.known[key] = false // a create in flight: observed below, checked from now on
		}
	}
	for key, present := range s.known {
		kind, n, _ := strings.Cut(key, ":")
		var exists bool
		switch kind {
		case "queue":
			ch, err := c.Channel()
			if err != nil {
				t.Fatal(err)
			}
			_, err = ch.QueueDeclarePassive(n, true, false, false, false, nil)
			exists = err == nil
			if err == nil {
				ch.Close()
			}
		case "binding":
			exists = bound[n]
		case "user":
			code, _ := api(t, b.HTTPAddr, "GET", "/api/users/"+n, "")
			exists = code == 200
		case "policy":
			code, _ := api(t, b.HTTPAddr, "GET", "/api/policies/%2F/"+n, "")
			exists = code == 200
		}
		if unsure[key] {
			s.known[key] = exists // a change in flight at the kill may go either way
			continue
		}
		checked++
		if exists != present {
			t.Errorf("after restart %d: %s exists=%v, but the client was told present=%v", round, key, exists, present)
		}
	}
	s.unsure = nil
	t.Logf("after restart %d: %d entities checked", round, checked)
}

// TestDefinitions_RoundTripWithRabbitMQ exports definitions from RabbitMQ (a vhost of the
// test's own with users, permissions, topic permissions, limits, policies (one with RabbitMQ
// 3.x's ha-* keys and a look-ahead pattern), queues, exchanges and bindings), starts Warren
// with them (--definitions, as RabbitMQ's load_definitions), exports from Warren and compares
// the two exports. RabbitMQ's management API is RABBITMQ_HTTP (default 127.0.0.1:15672).
func TestDefinitions_RoundTripWithRabbitMQ(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	rabbit := os.Getenv("RABBITMQ_HTTP")
	if rabbit == "" {
		rabbit = "127.0.0.1:15672"
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + rabbit + "/api/overview"); err != nil {
		clientMissing(t, "no RabbitMQ management API at %s: %v", rabbit, err)
	} else {
		resp.Body.Close()
	}
	v := secName(t, "defs-rt")
	u := v + "-user"
	ev, eu := url.PathEscape(v), url.PathEscape(u)
	t.Cleanup(func() {
		api(t, rabbit, "DELETE", "/api/vhosts/"+ev, "")
		api(t, rabbit, "DELETE", "/api/users/"+eu, "")
	})
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/api/vhosts/" + ev, "{}"},
		{"PUT", "/api/users/" + eu, `{"password":"pw","tags":"monitoring,policymaker"}`},
		{"PUT", "/api/permissions/" + ev + "/" + eu, `{"configure":"^(?!secret).*","write":".*","read":".*"}`},
		{"PUT", "/api/topic-permissions/" + ev + "/" + eu, `{"exchange":"amq.topic","write":"^{username}\\.","read":".*"}`},
		{"PUT", "/api/user-limits/" + eu + "/max-connections", `{"value":4}`},
		{"PUT", "/api/vhost-limits/" + ev + "/max-queues", `{"value":20}`},
		{"PUT", "/api/policies/" + ev + "/ha", `{"pattern":"^(?!amq\\.).*","apply-to":"queues","priority":2,"definition":{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic","message-ttl":60000}}`},
		{"PUT", "/api/policies/" + ev + "/ae", `{"pattern":"^in$","apply-to":"exchanges","priority":0,"definition":{"alternate-exchange":"unrouted"}}`},
		{"PUT", "/api/exchanges/" + ev + "/in", `{"type":"topic","durable":true}`},
		{"PUT", "/api/exchanges/" + ev + "/unrouted", `{"type":"fanout","durable":true}`},
		{"PUT", "/api/exchanges/" + ev + "/hx", `{"type":"headers","durable":true,"internal":true}`},
		{"PUT", "/api/queues/" + ev + "/orders", `{"durable":true,"arguments":{"x-max-length":100,"x-dead-letter-exchange":"unrouted"}}`},
		{"PUT", "/api/queues/" + ev + "/lost", `{"durable":true}`},
		{"POST", "/api/bindings/" + ev + "/e/in/q/orders", `{"routing_key":"order.#","arguments":{}}`},
		{"POST", "/api/bindings/" + ev + "/e/unrouted/q/lost", `{"routing_key":"","arguments":{}}`},
		{"POST", "/api/bindings/" + ev + "/e/in/e/hx", `{"routing_key":"","arguments":{"x-match":"any","k":1}}`},
	} {
		if code, body := api(t, rabbit, c.method, c.path, c.body); code/100 != 2 {
			t.Fatalf("RabbitMQ %s %s: %d %s", c.method, c.path, code, body)
		}
	}
	fromRabbit := mustAPI(t, rabbit, "GET", "/api/definitions", "")
	mine := onlyVHost(t, fromRabbit, v, u)
	data, _ := json.Marshal(mine)
	dir := t.TempDir()
	file := filepath.Join(dir, "definitions.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := durBroker(t, filepath.Join(dir, "data"), "--definitions", file)
	fromWarren := onlyVHost(t, mustAPI(t, b.HTTPAddr, "GET", "/api/definitions", ""), v, u)
	for _, k := range []string{"users", "vhosts", "permissions", "topic_permissions", "parameters", "policies", "queues", "exchanges", "bindings"} {
		w, r := normJSON(fromWarren[k]), normJSON(mine[k])
		if w != r {
			t.Errorf("%s differ:\n RabbitMQ %s\n Warren   %s", k, r, w)
		}
	}
	// What was imported works: the user connects with RabbitMQ's hash, its look-ahead
	// permission allows "open" and refuses "secret", and the alternate exchange routes.
	sb := &secBroker{amqpAddr: b.AMQPAddr}
	c, err := amqp.Dial(sb.url(u, "pw", v))
	if err != nil {
		t.Fatalf("the user exported from RabbitMQ cannot connect: %v", err)
	}
	defer c.Close()
	for _, q := range []string{"open", "secret"} {
		err = chanErr(t, c, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(q, false, true, false, false, nil)
			return err
		})
		if q == "open" && err != nil {
			t.Fatalf("declare %s: %v", q, err)
		}
		if q == "secret" {
			wantErrText(t, err, 403, "ACCESS_REFUSED - access to queue 'secret' in vhost '"+v+"' refused for user '"+u+"'")
		}
	}
	g := dialURL(t, "amqp://guest:guest@"+b.AMQPAddr+"/"+ev)
	ch := openChannel(t, g)
	if err := ch.Publish("in", "nowhere", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, err := ch.QueueDeclarePassive("lost", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if q.Messages == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the alternate exchange of the imported policy did not route")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// onlyVHost keeps the entries of one vhost and one user of a full export (RabbitMQ's node has
// others; guest's hash differs between the brokers).
func onlyVHost(t *testing.T, export, v, u string) map[string]any {
	t.Helper()
	var d map[string]any
	dec := json.NewDecoder(strings.NewReader(export))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for k, val := range d {
		l, ok := val.([]any)
		if !ok {
			continue
		}
		kept := []any{}
		for _, e := range l {
			m, ok := e.(map[string]any)
			if !ok {
				continue
			}
			switch {
			case k == "users":
				if m["name"] != u {
					continue
				}
			case k == "vhosts":
				if m["name"] != v {
					continue
				}
			case m["vhost"] != v:
				continue
			}
			kept = append(kept, e)
		}
		out[k] = kept
	}
	return out
}

// normJSON renders a list with its items sorted, so that order does not matter.
func normJSON(v any) string {
	l, _ := v.([]any)
	items := make([]string, len(l))
	for i, e := range l {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(e) // map keys are sorted
		items[i] = strings.TrimSpace(buf.String())
	}
	slices.Sort(items)
	return "[" + strings.Join(items, ",") + "]"
}
