package cluster

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"github.com/rs/zerolog"
)

// Serf tags a node gossips about itself.
const (
	tagID      = "id"     // random per start: tells a restarted node from a duplicate name
	tagRPC     = "rpc"    // node-to-node transport (Raft, forwarded proposals, queue data)
	tagAMQP    = "amqp"   // client listener
	tagHTTP    = "http"   // management listener
	tagVersion = "ver"    // Warren version
	tagExpect  = "expect" // --cluster-expect, for the first election
	tagRaft    = "raft"   // "1" once this node is in the Raft configuration
	tagStarted = "start"  // unix seconds the node started (uptime in /api/nodes)
	tagData    = "data"   // the data folder's id (DataID)
)

// Member is one node of the cluster as gossip sees it.
type Member struct {
	Name    string
	Status  string // alive, leaving, left, failed
	Gossip  string
	RPC     string
	AMQP    string
	HTTP    string
	Version string
	Started time.Time
	InRaft  bool
	// DataID names the node's data folder, made with it: a node that comes back with another
	// one lost its data (a wiped or replaced disk), whatever its name.
	DataID string
	expect int
	id     string
}

func memberOf(m serf.Member) Member {
	e, _ := strconv.Atoi(m.Tags[tagExpect])
	var started time.Time
	if s, err := strconv.ParseInt(m.Tags[tagStarted], 10, 64); err == nil {
		started = time.Unix(s, 0)
	}
	return Member{
		Name:    m.Name,
		Status:  m.Status.String(),
		Gossip:  net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
		RPC:     m.Tags[tagRPC],
		AMQP:    m.Tags[tagAMQP],
		HTTP:    m.Tags[tagHTTP],
		Version: m.Tags[tagVersion],
		Started: started,
		InRaft:  m.Tags[tagRaft] == "1",
		DataID:  m.Tags[tagData],
		expect:  e,
		id:      m.Tags[tagID],
	}
}

// ErrDuplicateName is returned when another live node already uses this node's name.
var ErrDuplicateName = errors.New("cluster: node name already in use")

// membership wraps serf: join with retry, tags, and a wake-up on every member change.
type membership struct {
	serf    *serf.Serf
	events  chan serf.Event
	changed chan struct{} // one slot: something changed, reconcile
	name    string
	id      string
	log     zerolog.Logger

	mu   sync.Mutex
	tags map[string]string

	stop chan struct{}
	wg   sync.WaitGroup
	// joinErr receives the duplicate-name refusal (the node must stop).
	fatal chan error
}

type mergeCheck struct{ m *membership }

func (c mergeCheck) NotifyMerge(ms []*serf.Member) error {
	for _, x := range ms {
		if x.Name == c.m.name && x.Tags[tagID] != c.m.id && x.Status == serf.StatusAlive {
			err := fmt.Errorf("%w: %q is taken by the node at %s", ErrDuplicateName, x.Name, net.JoinHostPort(x.Addr.String(), strconv.Itoa(int(x.Port))))
			select {
			case c.m.fatal <- err:
			default:
			}
			return err
		}
	}
	return nil
}

func startMembership(cfg *Config, tags map[string]string, log zerolog.Logger) (*membership, error) {
	host, portS, err := net.SplitHostPort(cfg.GossipListen)
	if err != nil {
		return nil, fmt.Errorf("cluster: --cluster-listen %q: %w", cfg.GossipListen, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("cluster: --cluster-listen %q: bad port", cfg.GossipListen)
	}
	m := &membership{
		events:  make(chan serf.Event, 256),
		changed: make(chan struct{}, 1),
		name:    cfg.NodeName,
		id:      tags[tagID],
		log:     log,
		tags:    tags,
		stop:    make(chan struct{}),
		fatal:   make(chan error, 1),
	}
	sc := serf.DefaultConfig()
	sc.Init()
	sc.NodeName = cfg.NodeName
	sc.Tags = tags
	sc.EventCh = m.events
	sc.Logger = stdLogger(log, "serf")
	sc.Merge = mergeCheck{m}
	sc.EnableNameConflictResolution = false // a duplicate is refused at join, not voted on
	sc.ReconnectTimeout = 72 * time.Hour    // a failed node stays known until forgotten
	sc.TombstoneTimeout = 24 * time.Hour
	// A failed member is tried again every 2 s (serf's default: 30 s): once a partition heals,
	// it is alive again within seconds, and the node bus, which only dials alive members,
	// reaches the queues homed there again (TestCluster_IsolatedNodeRefusesThenCatchesUp).
	sc.ReconnectInterval = 2 * time.Second
	ml := memberlist.DefaultLANConfig()
	ml.Name = cfg.NodeName
	ml.BindAddr, ml.BindPort = host, port
	if cfg.GossipAdvertise != "" {
		ah, ap, err := net.SplitHostPort(cfg.GossipAdvertise)
		if err != nil {
			return nil, fmt.Errorf("cluster: --cluster-advertise %q: %w", cfg.GossipAdvertise, err)
		}
		ml.AdvertiseAddr = ah
		ml.AdvertisePort, _ = strconv.Atoi(ap)
	}
	ml.Logger = stdLogger(log, "memberlist")
	ml.DeadNodeReclaimTime = 5 * time.Second // a node may come back from another address
	// A silent node (paused, cut off) should be declared failed within about 2 s, so that its
	// queues move within the 3 s the cluster promises: memberlist's LAN defaults (1 s probes,
	// suspicion 4 probe intervals) took 5.5 s here. A node wrongly suspected under load refutes
	// it; a wrong failure costs a leader move, never data (epochs fence the old leader).
	ml.ProbeInterval = 500 * time.Millisecond
	ml.ProbeTimeout = 250 * time.Millisecond
	ml.SuspicionMult = 3
	ml.GossipInterval = 100 * time.Millisecond
	if cfg.FastFailureDetection {
		ml.ProbeInterval = 300 * time.Millisecond
		ml.ProbeTimeout = 200 * time.Millisecond
		ml.SuspicionMult = 2
		ml.GossipInterval = 100 * time.Millisecond
	}
	if len(cfg.Key) > 0 {
		ml.SecretKey = cfg.Key
	}
	sc.MemberlistConfig = ml
	s, err := serf.Create(sc)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip: %w", err)
	}
	m.serf = s
	m.wg.Add(1)
	go m.drain()
	if len(cfg.Join) > 0 {
		m.wg.Add(1)
		go m.joinLoop(cfg.Join)
	}
	return m, nil
}

// drain hands member events on as a one-slot wake-up; the reconciler reads Members().
func (m *membership) drain() {
	defer m.wg.Done()
	for {
		select {
		case e := <-m.events:
			if me, ok := e.(serf.MemberEvent); ok {
				for _, x := range me.Members {
					m.log.Info().Str("node", x.Name).Str("event", me.String()).Msg("cluster member")
				}
			}
			select {
			case m.changed <- struct{}{}:
			default:
			}
		case <-m.stop:
			return
		}
	}
}

// joinLoop retries the join addresses with backoff until one answers, so that nodes can start
// in any order.
func (m *membership) joinLoop(addrs []string) {
	defer m.wg.Done()
	wait := 200 * time.Millisecond
	for {
		n, err := m.serf.Join(addrs, true)
		if n > 0 && !errors.Is(err, ErrDuplicateName) {
			m.log.Info().Int("contacted", n).Strs("join", addrs).Msg("joined cluster")
			return
		}
		if err != nil {
			if errors.Is(err, ErrDuplicateName) || isDuplicate(err) {
				return // reported on fatal by the merge check
			}
			m.log.Debug().Err(err).Strs("join", addrs).Msg("cluster join failed, retrying")
		}
		select {
		case <-m.stop:
			return
		case <-time.After(wait):
		}
		if wait < 5*time.Second {
			wait *= 2
		}
	}
}

// isDuplicate recognises the merge check's refusal after memberlist flattened it into text.
func isDuplicate(err error) bool {
	return err != nil && strings.Contains(err.Error(), ErrDuplicateName.Error())
}

// members returns every known member, sorted by name.
func (m *membership) members() []Member {
	var out []Member
	for _, x := range m.serf.Members() {
		out = append(out, memberOf(x))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// setTag changes one of this node's tags.
func (m *membership) setTag(k, v string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tags[k] == v {
		return nil
	}
	t := make(map[string]string, len(m.tags))
	for a, b := range m.tags {
		t[a] = b
	}
	t[k] = v
	if err := m.serf.SetTags(t); err != nil {
		return err
	}
	m.tags = t
	return nil
}

func (m *membership) close() {
	close(m.stop)
	m.serf.Leave()
	m.serf.Shutdown()
	m.wg.Wait()
}
