package main

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Cluster operations: membership (rabbitmqctl cluster_status, forget_cluster_node),
// maintenance (rabbitmq-upgrade drain/revive) and replicated queues (rabbitmq-queues
// rebalance, add_member, delete_member, grow, shrink, transfer_leadership).

func (cmd *command) clusterCmd() *cobra.Command {
	return group("cluster", "Cluster members and membership",
		&cobra.Command{Use: "status", Short: "Members, their state and Raft role, the leader (rabbitmqctl cluster_status)", Args: noArgs,
			RunE: func(*cobra.Command, []string) error { return cmd.clusterStatus() }},
		&cobra.Command{Use: "forget NODE", Short: "Remove a stopped node from the cluster for good (rabbitmqctl forget_cluster_node)", Args: nArgs(1, 1),
			ValidArgsFunction: cmd.completeNodes,
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("DELETE", "/cluster/nodes/"+seg(args[0]), nil, nil)
			}},
	)
}

// clusterStatus prints the members, their state and their Raft role, the leader and the log
// positions as the asked node sees them.
func (cmd *command) clusterStatus() error {
	var o map[string]any
	if err := cmd.c.do("GET", "/cluster", nil, &o); err != nil {
		return err
	}
	if cmd.json {
		return cmd.printJSON(o)
	}
	var rows [][]string
	members, _ := o["members"].([]any)
	for _, m := range members {
		m, _ := m.(map[string]any)
		leader := ""
		if b, _ := m["leader"].(bool); b {
			leader = "leader"
		}
		rows = append(rows, []string{str(m["name"]), str(m["status"]), str(m["raft"]), leader, str(m["amqp"]), str(m["version"])})
	}
	if err := cmd.table([]string{"node", "status", "raft", "", "amqp", "version"}, rows); err != nil {
		return err
	}
	if c, _ := o["clustered"].(bool); !c {
		return nil
	}
	return cmd.table([]string{"field", "value"}, [][]string{
		{"cluster", str(o["name"])}, {"asked", str(o["node"])}, {"state", str(o["state"])},
		{"leader", str(o["leader"])}, {"applied_index", str(o["applied_index"])},
		{"commit_index", str(o["commit_index"])}, {"last_contact", str(o["last_contact"])},
	})
}

// completeNodes completes a node name from the cluster's members.
func (cmd *command) completeNodes(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names, _ := cmd.members(false)
	return names, cobra.ShellCompDirectiveNoFileComp
}

// members returns the cluster's member names (only the alive ones with alive).
func (cmd *command) members(alive bool) ([]string, error) {
	var o map[string]any
	if err := cmd.c.do("GET", "/cluster", nil, &o); err != nil {
		return nil, err
	}
	var names []string
	ms, _ := o["members"].([]any)
	for _, m := range ms {
		m, _ := m.(map[string]any)
		if m != nil && (!alive || str(m["status"]) == "alive") {
			names = append(names, str(m["name"]))
		}
	}
	sort.Strings(names)
	return names, nil
}

// askedNode is the name of the node warrenctl talks to.
func (cmd *command) askedNode() (string, error) {
	var o map[string]any
	if err := cmd.c.do("GET", "/overview", nil, &o); err != nil {
		return "", err
	}
	return str(o["node"]), nil
}

// ---- node maintenance

func (cmd *command) nodeCmd() *cobra.Command {
	return group("node", "Maintenance of one node: drain before a restart, revive after (rabbitmq-upgrade drain/revive)",
		&cobra.Command{Use: "drain [NODE]", Args: nArgs(0, 1), ValidArgsFunction: cmd.completeNodes,
			Short: "Put NODE (default: the node asked) in maintenance (rabbitmq-upgrade drain); exit status 1 unless it is safe to stop",
			Long: `Put NODE (default: the node asked) in maintenance, as rabbitmq-upgrade drain: the leaderships
of its replicated queues move to in-sync replicas, then its client connections are closed
with 320 CONNECTION_FORCED (clients reconnect to another node) and new ones are refused.
It prints the queues whose leader moved and whether the node is safe to stop (it leads
no replicated queue any more); the exit status is 1 when it is not, so that

    warrenctl node drain && systemctl stop warren

stops only a node whose stop loses nothing. "node revive" ends the maintenance.`,
			RunE: func(_ *cobra.Command, args []string) error { return cmd.drain(args) }},
		&cobra.Command{Use: "revive [NODE]", Args: nArgs(0, 1), ValidArgsFunction: cmd.completeNodes,
			Short: "End NODE's maintenance (default: the node asked): it accepts clients again (rabbitmq-upgrade revive)",
			RunE: func(_ *cobra.Command, args []string) error {
				node, err := cmd.nodeArg(args)
				if err != nil {
					return err
				}
				var o map[string]any
				if err := cmd.c.do("POST", "/cluster/nodes/"+seg(node)+"/revive", map[string]any{}, &o); err != nil {
					return err
				}
				if cmd.json {
					return cmd.printJSON(o)
				}
				fmt.Fprintf(cmd.out, "node %s is out of maintenance and accepts clients\n", node)
				return nil
			}},
	)
}

func (cmd *command) nodeArg(args []string) (string, error) {
	if len(args) > 0 {
		return args[0], nil
	}
	return cmd.askedNode()
}

// notSafe is a drained node that still leads a queue (exit status 1).
type notSafe struct{ node string }

func (e *notSafe) Error() string {
	return "node " + e.node + " still leads replicated queues: not safe to stop yet (run drain again)"
}

func (cmd *command) drain(args []string) error {
	node, err := cmd.nodeArg(args)
	if err != nil {
		return err
	}
	var o map[string]any
	if err := cmd.c.do("POST", "/cluster/nodes/"+seg(node)+"/drain", map[string]any{}, &o); err != nil {
		return err
	}
	safe, _ := o["safe_to_stop"].(bool)
	if cmd.json {
		if err := cmd.printJSON(o); err != nil {
			return err
		}
	} else {
		var rows [][]string
		moved, _ := o["moved"].([]any)
		for _, m := range moved {
			m, _ := m.(map[string]any)
			rows = append(rows, []string{str(m["vhost"]), str(m["queue"]), "leader moved"})
		}
		failed, _ := o["failed"].([]any)
		for _, f := range failed {
			rows = append(rows, []string{"", str(f), "failed"})
		}
		if len(rows) > 0 {
			if err := cmd.table([]string{"vhost", "queue", "result"}, rows); err != nil {
				return err
			}
		}
		verdict := "safe to stop"
		if !safe {
			verdict = "NOT safe to stop"
		}
		fmt.Fprintf(cmd.out, "node %s is in maintenance: %d leaderships moved; %s\n", node, len(moved), verdict)
	}
	if !safe {
		return &notSafe{node: node}
	}
	return nil
}

// ---- replicated queues

func (cmd *command) queuesCmd() *cobra.Command {
	var vhostPat, queuePat string
	var replace bool
	grow := &cobra.Command{Use: "grow NODE all|even", Args: nArgs(2, 2), ValidArgsFunction: cmd.completeNodes,
		Short: "Add a replica on NODE to every replicated queue (even: those with an even number of replicas) (rabbitmq-queues grow)",
		RunE: func(_ *cobra.Command, args []string) error {
			if args[1] != "all" && args[1] != "even" {
				return usageError("grow: the second argument is all or even")
			}
			return cmd.grow(args[0], args[1] == "even", vhostPat, queuePat)
		}}
	shrink := &cobra.Command{Use: "shrink NODE", Args: nArgs(1, 1), ValidArgsFunction: cmd.completeNodes,
		Short: "Remove NODE's replica from every replicated queue, moving leaderships off it first (rabbitmq-queues shrink)",
		Long: `Remove NODE's replica from every replicated queue (rabbitmq-queues shrink), for a node
being retired. A queue NODE leads first hands its leadership to an in-sync replica. With
--replace (the default) a running node that holds no replica of the queue is added first,
the one holding the fewest replicas, so the queue keeps as many replicas as it had; without
one, the queue is left one replica short.`,
		RunE: func(_ *cobra.Command, args []string) error {
			return cmd.shrink(args[0], replace, vhostPat, queuePat)
		}}
	for _, c := range []*cobra.Command{grow, shrink} {
		c.Flags().StringVar(&vhostPat, "vhost-pattern", ".*", "only the vhosts matching this regular expression")
		c.Flags().StringVar(&queuePat, "queue-pattern", ".*", "only the queues matching this regular expression")
	}
	shrink.Flags().BoolVar(&replace, "replace", true, "add a replica on another running node to keep each queue's replica count")
	return group("queues", "Replicated (quorum) queues: leaders and members (rabbitmq-queues)",
		&cobra.Command{Use: "rebalance", Args: noArgs,
			Short: "Spread the leaders of replicated queues evenly over the running nodes (rabbitmq-queues rebalance quorum)",
			RunE:  func(*cobra.Command, []string) error { return cmd.rebalance() }},
		&cobra.Command{Use: "transfer-leader QUEUE [NODE]", Args: nArgs(1, 2), ValidArgsFunction: cmd.completeNames("queues"),
			Short: "Move a replicated queue's leadership in --vhost to NODE, one of its replicas (default: the most up-to-date one), losing no confirmed message",
			RunE: func(_ *cobra.Command, args []string) error {
				body := map[string]any{}
				if len(args) > 1 {
					body["node"] = args[1]
				}
				return cmd.c.do("POST", "/queues/"+seg(cmd.vhost)+"/"+seg(args[0])+"/leader", body, nil)
			}},
		&cobra.Command{Use: "add-member QUEUE NODE", Args: nArgs(2, 2), ValidArgsFunction: cmd.completeNames("queues"),
			Short: "Add a replica on NODE to a replicated queue of --vhost; it catches up from the leader (rabbitmq-queues add_member)",
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("POST", "/queues/"+seg(cmd.vhost)+"/"+seg(args[0])+"/members", map[string]any{"node": args[1]}, nil)
			}},
		&cobra.Command{Use: "delete-member QUEUE NODE", Args: nArgs(2, 2), ValidArgsFunction: cmd.completeNames("queues"),
			Short: "Remove NODE's replica from a replicated queue of --vhost; not the leader's (rabbitmq-queues delete_member)",
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("DELETE", "/queues/"+seg(cmd.vhost)+"/"+seg(args[0])+"/members/"+seg(args[1]), nil, nil)
			}},
		grow, shrink,
	)
}

func (cmd *command) rebalance() error {
	var o map[string]any
	if err := cmd.c.do("POST", "/rebalance", map[string]any{}, &o); err != nil {
		return err
	}
	failed, _ := o["failed"].([]any)
	if cmd.json {
		if err := cmd.printJSON(o); err != nil {
			return err
		}
	} else {
		var rows [][]string
		moved, _ := o["moved"].([]any)
		for _, m := range moved {
			m, _ := m.(map[string]any)
			rows = append(rows, []string{str(m["vhost"]), str(m["queue"]), str(m["from"]), str(m["to"])})
		}
		for _, f := range failed {
			rows = append(rows, []string{"", str(f), "", "failed"})
		}
		if len(rows) == 0 {
			fmt.Fprintln(cmd.out, "leaders are balanced: nothing moved")
		} else if err := cmd.table([]string{"vhost", "queue", "from", "to"}, rows); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("rebalance: %d leaderships could not move", len(failed))
	}
	return nil
}

// replicated is a replicated queue as /api/queues shows it.
type replicated struct {
	vhost, name, leader string
	members             []string
}

// replicatedQueues lists the replicated queues of every vhost matching the patterns.
func (cmd *command) replicatedQueues(vhostPat, queuePat string) ([]replicated, error) {
	vre, err := regexp.Compile(vhostPat)
	if err != nil {
		return nil, usageError("--vhost-pattern: " + err.Error())
	}
	qre, err := regexp.Compile(queuePat)
	if err != nil {
		return nil, usageError("--queue-pattern: " + err.Error())
	}
	var items []map[string]any
	if err := cmd.c.do("GET", "/queues", nil, &items); err != nil {
		return nil, err
	}
	var qs []replicated
	for _, it := range items {
		ms, ok := it["members"].([]any)
		if !ok || !vre.MatchString(str(it["vhost"])) || !qre.MatchString(str(it["name"])) {
			continue
		}
		q := replicated{vhost: str(it["vhost"]), name: str(it["name"]), leader: str(it["leader"])}
		for _, m := range ms {
			q.members = append(q.members, str(m))
		}
		qs = append(qs, q)
	}
	sort.Slice(qs, func(i, j int) bool { return qs[i].vhost+"\x00"+qs[i].name < qs[j].vhost+"\x00"+qs[j].name })
	return qs, nil
}

func (q replicated) path() string { return "/queues/" + seg(q.vhost) + "/" + seg(q.name) }

func (q replicated) has(node string) bool {
	for _, m := range q.members {
		if m == node {
			return true
		}
	}
	return false
}

// stepResults prints what a grow or shrink did per queue, and fails if a step failed.
func (cmd *command) stepResults(verb string, rows [][]string, failures int) error {
	if cmd.json {
		out := make([]map[string]string, len(rows))
		for i, r := range rows {
			out[i] = map[string]string{"vhost": r[0], "queue": r[1], "result": r[2]}
		}
		if err := cmd.printJSON(out); err != nil {
			return err
		}
	} else if len(rows) == 0 {
		fmt.Fprintln(cmd.out, "no queue to change")
	} else if err := cmd.table([]string{"vhost", "queue", "result"}, rows); err != nil {
		return err
	}
	if failures > 0 {
		return fmt.Errorf("%s: %d of %d queues failed", verb, failures, len(rows))
	}
	return nil
}

func (cmd *command) grow(node string, even bool, vhostPat, queuePat string) error {
	qs, err := cmd.replicatedQueues(vhostPat, queuePat)
	if err != nil {
		return err
	}
	var rows [][]string
	failures := 0
	for _, q := range qs {
		if q.has(node) || even && len(q.members)%2 != 0 {
			continue
		}
		result := "added " + node
		if err := cmd.c.do("POST", q.path()+"/members", map[string]any{"node": node}, nil); err != nil {
			result, failures = "failed: "+err.Error(), failures+1
		}
		rows = append(rows, []string{q.vhost, q.name, result})
	}
	return cmd.stepResults("grow", rows, failures)
}

func (cmd *command) shrink(node string, replace bool, vhostPat, queuePat string) error {
	qs, err := cmd.replicatedQueues(vhostPat, queuePat)
	if err != nil {
		return err
	}
	alive, err := cmd.members(true)
	if err != nil {
		return err
	}
	load := map[string]int{} // replicas per running node, to spread the replacements
	for _, n := range alive {
		load[n] = 0
	}
	all, err := cmd.replicatedQueues(".*", ".*")
	if err != nil {
		return err
	}
	for _, q := range all {
		for _, m := range q.members {
			if _, ok := load[m]; ok {
				load[m]++
			}
		}
	}
	var rows [][]string
	failures := 0
	for _, q := range qs {
		if !q.has(node) {
			continue
		}
		var steps []string
		err := func() error {
			if replace {
				if to := pickReplacement(q, node, alive, load); to != "" {
					if err := cmd.c.do("POST", q.path()+"/members", map[string]any{"node": to}, nil); err != nil {
						return fmt.Errorf("adding %s: %w", to, err)
					}
					load[to]++
					steps = append(steps, "added "+to)
				} else {
					steps = append(steps, "no node to replace it")
				}
			}
			if q.leader == node {
				if err := cmd.c.do("POST", q.path()+"/leader", map[string]any{}, nil); err != nil {
					return fmt.Errorf("moving the leader: %w", err)
				}
				steps = append(steps, "leader moved")
			}
			// The placement moved on the leader's node: the node asked may apply it a moment later.
			if err := cmd.retryWhileLeader(func() error { return cmd.c.do("DELETE", q.path()+"/members/"+seg(node), nil, nil) }); err != nil {
				return fmt.Errorf("removing %s: %w", node, err)
			}
			steps = append(steps, "removed "+node)
			return nil
		}()
		if err != nil {
			steps = append(steps, "failed: "+err.Error())
			failures++
		}
		rows = append(rows, []string{q.vhost, q.name, strings.Join(steps, ", ")})
	}
	return cmd.stepResults("shrink", rows, failures)
}

// pickReplacement is the running node holding the fewest replicas that holds none of q and is
// not the node leaving ("" if there is none).
func pickReplacement(q replicated, leaving string, alive []string, load map[string]int) string {
	best := ""
	for _, n := range alive {
		if n == leaving || q.has(n) {
			continue
		}
		if best == "" || load[n] < load[best] {
			best = n
		}
	}
	return best
}

// retryWhileLeader runs f again for up to 10 s while it answers that the node still leads the
// queue (the node asked has not applied the leader's move yet).
func (cmd *command) retryWhileLeader(f func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		var ae *apiError
		if err == nil || !errors.As(err, &ae) || !strings.Contains(ae.Reason, "move the leader first") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
