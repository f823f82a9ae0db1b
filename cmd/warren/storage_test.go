package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/wal"
)

// startNode opens the storage in data and starts a broker on it (without listening).
func startNode(t *testing.T, data string) *broker.Server {
	t.Helper()
	enc, err := loadEnc(t, data)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	st, err := openStorage(wal.Config{Dir: filepath.Join(data, "wal"), Logger: log}, filepath.Join(data, "spill"), enc)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Config{DataDir: data, Storage: st, Log: log})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return srv
}

// A data folder written by a version before the metadata store: a definitions log with
// queue, exchange, binding and policy records (no vhost records; the policy twice, as each
// restart used to add one) and DATA_DIR/security.json with users, vhosts, permissions, topic
// permissions, limits and a copy of the policies. All of it is kept, the file is imported once
// and renamed aside, and a policy only the file held (deleted, in the log) stays deleted.
func TestStorage_TakesOverAnOlderDataFolder(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	m, err := wal.Open(wal.Config{Dir: filepath.Join(data, "wal")})
	if err != nil {
		t.Fatal(err)
	}
	defs, err := m.Log(defsLog)
	if err != nil {
		t.Fatal(err)
	}
	policy := amqp.Table{"k": "policy", "v": "/old", "n": "ttl", "p": "^o", "at": "queues", "pr": int64(0), "d": amqp.Table{"message-ttl": int64(60000)}}
	for _, rec := range []amqp.Table{
		{"k": "exchange", "v": "/old", "n": "orders", "t": "topic", "ad": false, "i": false, "a": amqp.Table{}},
		policy,
		{"k": "queue", "v": "/old", "n": "orders.q", "ad": false, "a": amqp.Table{"x-max-length": int64(7)}},
		{"k": "binding", "v": "/old", "s": "orders", "d": "orders.q", "de": false, "rk": "o.#", "a": amqp.Table{}},
		policy,
	} {
		defs.Append(amqp.AppendTable(nil, rec), nil)
	}
	if err := defs.Sync(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	hash := "ZfaHpf1CSIt9MyxendjEdmPU+Fzyd+JbWcSZYihTmkXlXRT2" // "secp", taken from RabbitMQ 3.10.8
	old := `{
	  "users": [{"name":"app","password_hash":"` + hash + `","hashing_algorithm":"rabbit_password_hashing_sha256","tags":["management"],"limits":{"max-connections":2}}],
	  "vhosts": [{"name":"/"},{"name":"/old"}],
	  "permissions": [{"user":"app","vhost":"/old","configure":".*","write":".*","read":".*"}],
	  "topic_permissions": [{"user":"app","vhost":"/old","exchange":"orders","write":"^o\\.","read":".*"}],
	  "parameters": [{"vhost":"/old","component":"vhost-limits","name":"limits","value":{"max-queues":10}}],
	  "policies": [{"vhost":"/old","name":"ttl","pattern":"^o","apply-to":"queues","priority":0,"definition":{"message-ttl":60000}},
	               {"vhost":"/old","name":"deleted","pattern":".*","apply-to":"all","priority":0,"definition":{"max-length":1}}]
	}`
	if err := os.WriteFile(filepath.Join(data, "security.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}

	var size int64
	for start := range 3 {
		srv := startNode(t, data)
		if _, err := os.Stat(filepath.Join(data, "security.json")); !os.IsNotExist(err) {
			t.Fatalf("start %d: security.json still there (%v)", start, err)
		}
		if _, ok := srv.CheckUser("app", "secp", nil); !ok {
			t.Errorf("start %d: the older version's user does not authenticate", start)
		}
		if _, ok := srv.User("guest"); ok {
			t.Errorf("start %d: the default user was added to an older node's users", start)
		}
		if u, _ := srv.User("app"); u.Limits.MaxConnections != 2 {
			t.Errorf("start %d: user limits %+v", start, u.Limits)
		}
		if l, err := srv.VHostLimitsOf("/old"); err != nil || l.MaxQueues != 10 {
			t.Errorf("start %d: vhost limits %+v %v", start, l, err)
		}
		if tp := srv.TopicPermissions(); len(tp) != 1 || tp[0].Write != "^o\\." {
			t.Errorf("start %d: topic permissions %+v", start, tp)
		}
		v := srv.VHost("/old")
		if v == nil {
			t.Fatalf("start %d: vhost /old is gone", start)
		}
		q := v.Queue("orders.q")
		if q == nil || v.Exchange("orders") == nil || len(v.Bindings()) != 2 {
			t.Fatalf("start %d: queue %v, exchange %v, bindings %v", start, q, v.Exchange("orders"), v.Bindings())
		}
		if ps := v.Policies(); len(ps) != 1 || ps[0].Name != "ttl" || v.QueuePolicy(q) != "ttl" {
			t.Errorf("start %d: policies %+v", start, ps)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		n := dirSize(t, filepath.Join(data, "wal", defsLog))
		if start > 0 && n != size {
			t.Errorf("start %d: the metadata log went from %d to %d bytes", start, size, n)
		}
		size = n
	}
	if _, err := os.Stat(filepath.Join(data, "security.json.imported")); err != nil {
		t.Errorf("the imported file was not kept aside: %v", err)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range es {
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}

// An older version's users file left empty by a power loss during its write (it was written
// without fsync) used to stop the node from starting: now the node starts with the default
// user, says so, and sets the file aside.
func TestStorage_EmptyOlderUsersFile(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "security.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startNode(t, data)
	defer srv.Close()
	if _, ok := srv.CheckUser("guest", "guest", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); !ok {
		t.Fatal("no default user")
	}
	if _, err := os.Stat(filepath.Join(data, "security.json")); !os.IsNotExist(err) {
		t.Fatalf("the empty file is still in place (%v)", err)
	}
}
