package clustertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"
)

// MetadataView reads what node n reports through its management API (RabbitMQ's shapes:
// /api/queues, /api/exchanges, /api/bindings) as sorted strings, for Converged: "queue
// VHOST/NAME", "exchange VHOST/NAME TYPE", "binding VHOST/SOURCE->DEST KEY".
func (c *Cluster) MetadataView(n int) ([]string, error) {
	node := c.Node(n)
	cl := &http.Client{Timeout: 5 * time.Second}
	get := func(path string, into any) error {
		req, err := http.NewRequest("GET", "http://"+node.Args.HTTP+path, nil)
		if err != nil {
			return err
		}
		req.SetBasicAuth(node.Args.User, node.Args.Pass)
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s on node %d: %s", path, n, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(into)
	}
	var qs []struct{ Vhost, Name string }
	var xs []struct{ Vhost, Name, Type string }
	var bs []struct {
		Vhost       string
		Source      string
		Destination string
		RoutingKey  string `json:"routing_key"`
	}
	if err := get("/api/queues", &qs); err != nil {
		return nil, err
	}
	if err := get("/api/exchanges", &xs); err != nil {
		return nil, err
	}
	if err := get("/api/bindings", &bs); err != nil {
		return nil, err
	}
	var out []string
	for _, q := range qs {
		out = append(out, fmt.Sprintf("queue %s/%s", q.Vhost, q.Name))
	}
	for _, x := range xs {
		out = append(out, fmt.Sprintf("exchange %s/%s %s", x.Vhost, x.Name, x.Type))
	}
	for _, b := range bs {
		out = append(out, fmt.Sprintf("binding %s/%s->%s %s", b.Vhost, b.Source, b.Destination, b.RoutingKey))
	}
	sort.Strings(out)
	return out, nil
}

// WaitClustered waits until every running node's /api/nodes lists all the harness's nodes as
// running (RabbitMQ's shape: [{"name": ..., "running": true}, ...]), or until timeout.
func (c *Cluster) WaitClustered(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	cl := &http.Client{Timeout: 2 * time.Second}
	for {
		var last error
		ready := 0
		for _, n := range c.Nodes {
			req, _ := http.NewRequest("GET", "http://"+n.Args.HTTP+"/api/nodes", nil)
			req.SetBasicAuth(n.Args.User, n.Args.Pass)
			resp, err := cl.Do(req)
			if err != nil {
				last = err
				break
			}
			var nodes []struct{ Running bool }
			err = json.NewDecoder(resp.Body).Decode(&nodes)
			resp.Body.Close()
			running := 0
			for _, x := range nodes {
				if x.Running {
					running++
				}
			}
			if err != nil || running != len(c.Nodes) {
				last = fmt.Errorf("node %d sees %d of %d nodes running (%v)", n.Args.Index, running, len(c.Nodes), err)
				break
			}
			ready++
		}
		if ready == len(c.Nodes) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clustertest: not clustered within %v: %w", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// QueueFigures returns what node n's management API says of the queues (name: ready,
// unacknowledged, consumers, leader or node): printed for a failed round, to tell a message
// that is gone from one held back somewhere.
func (c *Cluster) QueueFigures(n int) (map[string]string, error) {
	node := c.Node(n)
	cl := &http.Client{Timeout: 5 * time.Second}
	req, err := http.NewRequest("GET", "http://"+node.Args.HTTP+"/api/queues", nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(node.Args.User, node.Args.Pass)
	resp, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var qs []struct {
		Name      string
		Ready     int    `json:"messages_ready"`
		Unacked   int    `json:"messages_unacknowledged"`
		Consumers int    `json:"consumers"`
		Node      string `json:"node"`
		Leader    string `json:"leader"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&qs); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, q := range qs {
		out[q.Name] = fmt.Sprintf("ready %d unacked %d consumers %d node %s leader %s", q.Ready, q.Unacked, q.Consumers, q.Node, q.Leader)
	}
	return out, nil
}
