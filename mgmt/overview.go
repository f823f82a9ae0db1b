package mgmt

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/session"
	"github.com/warrenmq/warren/broker/vhost"
)

func unixTime(sec int64) time.Time { return time.Unix(sec, 0) }

var exchangeTypes = []obj{
	{"name": "direct", "description": "AMQP direct exchange, as per the AMQP specification", "enabled": true},
	{"name": "fanout", "description": "AMQP fanout exchange, as per the AMQP specification", "enabled": true},
	{"name": "headers", "description": "AMQP headers exchange, as per the AMQP specification", "enabled": true},
	{"name": "topic", "description": "AMQP topic exchange, as per the AMQP specification", "enabled": true},
}

// nodeMessageStats renders the node's counters as message_stats, with rates.
func (s *Server) nodeMessageStats() obj {
	st := s.b.Stats().Snapshot()
	rt := s.rates.rates(nodeKey{}, nodeLen)
	ms := obj{}
	for k := range session.NumStats {
		ms[k.String()] = st[k]
		ms[k.String()+"_details"] = details(rt[k])
	}
	ms["deliver_get"] = st[session.StatDeliver] + st[session.StatDeliverNoAck] + st[session.StatGet] + st[session.StatGetNoAck]
	ms["deliver_get_details"] = details(rt[session.StatDeliver] + rt[session.StatDeliverNoAck] + rt[session.StatGet] + rt[session.StatGetNoAck])
	return ms
}

// totals counts objects and messages across the node (or one vhost when only is set).
type totals struct {
	queues, exchanges, consumers, connections, channels int
	ready, unacked                                      int
}

func (s *Server) totals(only *vhost.VHost) totals {
	var t totals
	for _, vh := range s.b.VHosts() {
		if only != nil && vh != only {
			continue
		}
		t.exchanges += len(vh.Exchanges())
		for _, q := range vh.Queues() {
			in := q.Info()
			t.queues++
			t.ready += in.Ready // a queue led on another node has none here
			t.unacked += in.Unacked
		}
	}
	// Consumers are counted on their client's node (a queue's own count at its leader would
	// count a consumer twice in a cluster: there and on its node).
	for _, c := range s.b.Connections() {
		if only != nil && c.VHostName() != only.Name {
			continue
		}
		t.connections++
		for _, ch := range c.Channels() {
			t.channels++
			t.consumers += len(ch.Consumers())
		}
	}
	return t
}

// addPeerTotals adds every other member's own connections, channels, consumers and messages
// (their /api/overview, local) to t: the cluster's totals, as RabbitMQ's overview shows.
func (s *Server) addPeerTotals(r *http.Request, t *totals) {
	if !s.clusterWide(r) {
		return
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range s.peers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := s.askPeer(r, m, "GET", "/api/overview")
			if err != nil || code != http.StatusOK {
				return
			}
			var o struct {
				Queue struct {
					Ready   int `json:"messages_ready"`
					Unacked int `json:"messages_unacknowledged"`
				} `json:"queue_totals"`
				Object struct{ Connections, Channels, Consumers int } `json:"object_totals"`
			}
			if json.Unmarshal(body, &o) != nil {
				return
			}
			mu.Lock()
			t.connections += o.Object.Connections
			t.channels += o.Object.Channels
			t.consumers += o.Object.Consumers
			t.ready += o.Queue.Ready
			t.unacked += o.Queue.Unacked
			mu.Unlock()
		}()
	}
	wg.Wait()
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	t := s.totals(nil)
	s.addPeerTotals(r, &t)
	rt := s.rates.rates(nodeKey{}, nodeLen)
	var listeners []obj
	if a := s.b.Addr(); a != nil {
		h, p := splitHostPort(a.String())
		listeners = append(listeners, obj{"node": s.cfg.Node, "protocol": "amqp", "ip_address": h, "port": p})
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		h, p := splitHostPort(la.String())
		listeners = append(listeners, obj{"node": s.cfg.Node, "protocol": "http", "ip_address": h, "port": p})
	}
	writeObj(w, r, obj{
		"management_version": CompatVersion, "rabbitmq_version": CompatVersion,
		"product_name": "Warren", "product_version": broker.Version,
		"erlang_version": runtime.Version(), "erlang_full_version": runtime.Version(),
		"rates_mode": "basic", "cluster_name": s.clusterName(), "node": s.cfg.Node,
		"disable_stats": false, "enable_queue_totals": false, "statistics_db_event_queue": 0,
		"exchange_types": exchangeTypes, "listeners": listeners, "contexts": []obj{},
		"message_stats": s.nodeMessageStats(),
		"queue_totals": obj{
			"messages": t.ready + t.unacked, "messages_details": details(rt[nodeMessages]),
			"messages_ready": t.ready, "messages_ready_details": details(rt[nodeReady]),
			"messages_unacknowledged": t.unacked, "messages_unacknowledged_details": details(rt[nodeUnacked]),
		},
		"object_totals": obj{
			"connections": t.connections, "channels": t.channels, "exchanges": t.exchanges,
			"queues": t.queues, "consumers": t.consumers,
		},
	})
}

// nodeStats are the process figures shared by /api/nodes and /metrics.
type nodeStats struct {
	memUsed, memLimit    uint64
	diskFree, diskLimit  uint64
	fdUsed, fdTotal      int
	memAlarm, diskAlarm  bool
	goroutines, procsMax int
}

func (s *Server) readNodeStats() nodeStats {
	var ns nodeStats
	// Resident memory, as the memory alarm (and RabbitMQ's default rss strategy) counts it.
	ns.memUsed = uint64(max(s.b.ResidentMemory(), 0))
	ns.memLimit = memLimit()
	if m, _ := s.b.AlarmLimits(); m > 0 {
		ns.memLimit = uint64(m)
	}
	ns.memAlarm, ns.diskAlarm = s.b.Alarms()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(s.b.Config().DataDir, &fs); err == nil {
		ns.diskFree = fs.Bavail * uint64(fs.Bsize)
	}
	if _, d := s.b.AlarmLimits(); d > 0 {
		ns.diskLimit = uint64(d)
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		ns.fdUsed = len(ents)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		ns.fdTotal = int(rl.Cur)
	}
	ns.goroutines = runtime.NumGoroutine()
	ns.procsMax = 1 << 20
	return ns
}

// memLimit is RabbitMQ's vm_memory_high_watermark (0.4) of the machine's memory, or of
// GOMEMLIMIT when set.
func memLimit() uint64 {
	sample := []metrics.Sample{{Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		if l := sample[0].Value.Uint64(); l > 0 && l < 1<<62 {
			return l
		}
	}
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err == nil {
		return uint64(float64(si.Totalram*uint64(si.Unit)) * 0.4)
	}
	return 0
}

func (s *Server) nodeJSON() obj {
	ns := s.readNodeStats()
	return obj{
		"name": s.cfg.Node, "type": "disc", "running": true, "being_drained": s.b.Draining(),
		"mem_used": ns.memUsed, "mem_limit": ns.memLimit, "mem_alarm": ns.memAlarm, "mem_calculation_strategy": "rss",
		"disk_free": ns.diskFree, "disk_free_limit": ns.diskLimit, "disk_free_alarm": ns.diskAlarm,
		"fd_used": ns.fdUsed, "fd_total": ns.fdTotal, "sockets_used": len(s.b.Connections()), "sockets_total": ns.fdTotal,
		"proc_used": ns.goroutines, "proc_total": ns.procsMax, "processors": runtime.NumCPU(),
		"run_queue": 0, "uptime": time.Since(s.started).Milliseconds(), "os_pid": strconv.Itoa(os.Getpid()),
		"rates_mode": "basic", "net_ticktime": 60, "partitions": s.partitions(),
		"exchange_types": exchangeTypes, "applications": []obj{}, "contexts": []obj{},
		"db_dir": s.b.Config().DataDir, "enabled_plugins": []string{"rabbitmq_management", "rabbitmq_prometheus"},
	}
}

func (s *Server) nodes(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cluster == nil {
		writeList(w, r, []obj{s.nodeJSON()})
		return
	}
	members := s.cfg.Cluster.Members()
	out := make([]obj, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m.Name == s.cfg.Node {
			out[i] = s.nodeJSON()
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = s.memberJSON(r, m) }()
	}
	wg.Wait()
	writeList(w, r, out)
}

func (s *Server) node(w http.ResponseWriter, r *http.Request) {
	name := pathValue(r, "node")
	if name == s.cfg.Node {
		writeObj(w, r, s.nodeJSON())
		return
	}
	if s.cfg.Cluster != nil {
		for _, m := range s.cfg.Cluster.Members() {
			if m.Name == name {
				writeObj(w, r, s.memberJSON(r, m))
				return
			}
		}
	}
	notFound(w)
}

func (s *Server) vhostJSON(vh *vhost.VHost) obj {
	t := s.totals(vh)
	return obj{
		"name": vh.Name, "description": "", "tags": []string{}, "tracing": false,
		"metadata":           obj{"description": "", "tags": []string{}},
		"default_queue_type": "classic", "cluster_state": obj{s.cfg.Node: "running"},
		"messages": t.ready + t.unacked, "messages_ready": t.ready, "messages_unacknowledged": t.unacked,
	}
}

func (s *Server) vhosts(w http.ResponseWriter, r *http.Request) {
	items := []obj{}
	for _, vh := range s.visibleVHosts(r) {
		items = append(items, s.vhostJSON(vh))
	}
	writeList(w, r, items)
}

func (s *Server) vhost(w http.ResponseWriter, r *http.Request) {
	if vh := s.vhostParam(w, r); vh != nil {
		writeObj(w, r, s.vhostJSON(vh))
	}
}

// aliveness declares the aliveness-test queue, publishes a message to it and gets it back.
func (s *Server) aliveness(w http.ResponseWriter, r *http.Request) {
	vh := s.vhostParam(w, r)
	if vh == nil {
		return
	}
	q, _, err := vh.DeclareQueue(vhost.QueueDecl{Name: "aliveness-test"})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, obj{"status": "failed", "reason": err.Error()})
		return
	}
	msg, err := message.New("", "aliveness-test", []byte{0, 0}, []byte("test_message"))
	if err == nil {
		q.Publish(msg, nil)
	}
	if _, _, ok, err := q.Get(true); err != nil || !ok {
		writeJSON(w, http.StatusServiceUnavailable, obj{"status": "failed", "reason": "no message"})
		return
	}
	writeJSON(w, http.StatusOK, obj{"status": "ok"})
}
