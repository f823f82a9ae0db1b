package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

type command struct {
	c     *client
	out   io.Writer
	vhost string
	json  bool
}

// listColumns are the table columns of each list, dotted paths into the JSON.
var listColumns = map[string][]string{
	"queues":      {"vhost", "name", "type", "durable", "messages_ready", "messages_unacknowledged", "consumers", "message_stats.publish_details.rate"},
	"exchanges":   {"vhost", "name", "type", "durable", "auto_delete", "internal"},
	"bindings":    {"vhost", "source", "destination", "destination_type", "routing_key", "properties_key"},
	"connections": {"name", "user", "vhost", "channels", "state", "recv_oct", "send_oct"},
	"channels":    {"name", "user", "vhost", "prefetch_count", "consumer_count", "messages_unacknowledged", "confirm"},
	"consumers":   {"queue.vhost", "queue.name", "consumer_tag", "channel_details.name", "ack_required", "prefetch_count"},
	"users":       {"name", "tags"},
	"vhosts":      {"name", "messages"},
	"permissions": {"user", "vhost", "configure", "write", "read"},
}

func (cmd *command) dispatch(args []string) error {
	verb, rest := args[0], args[1:]
	need := func(n int, what string) error {
		if len(rest) < n {
			return usageError("warrenctl " + verb + ": expected " + what + "\n" + usage)
		}
		return nil
	}
	switch verb {
	case "status":
		return cmd.status()
	case "list":
		if err := need(1, "what to list"); err != nil {
			return err
		}
		return cmd.list(rest[0])
	case "declare", "add", "set":
		if err := need(2, "a kind and a name"); err != nil {
			return err
		}
		return cmd.declare(rest[0], rest[1], rest[2:])
	case "delete":
		if err := need(2, "a kind and a name"); err != nil {
			return err
		}
		return cmd.delete(rest[0], rest[1])
	case "close":
		if err := need(2, "connection NAME"); err != nil {
			return err
		}
		return cmd.c.do("DELETE", "/connections/"+seg(rest[1]), nil, nil)
	case "purge":
		if err := need(1, "a queue name"); err != nil {
			return err
		}
		return cmd.c.do("DELETE", "/queues/"+seg(cmd.vhost)+"/"+seg(rest[0])+"/contents", nil, nil)
	case "publish":
		if err := need(3, "EXCHANGE ROUTING_KEY PAYLOAD"); err != nil {
			return err
		}
		return cmd.publish(rest[0], rest[1], rest[2])
	case "get":
		if err := need(1, "a queue name"); err != nil {
			return err
		}
		return cmd.get(rest[0], rest[1:])
	case "export":
		if err := need(1, "a file name"); err != nil {
			return err
		}
		return cmd.export(rest[0])
	case "import":
		if err := need(1, "a file name"); err != nil {
			return err
		}
		return cmd.importDefs(rest[0])
	case "cluster":
		if err := need(1, "status or forget NODE"); err != nil {
			return err
		}
		switch rest[0] {
		case "status":
			return cmd.clusterStatus()
		case "forget":
			if err := need(2, "forget NODE"); err != nil {
				return err
			}
			return cmd.c.do("DELETE", "/cluster/nodes/"+seg(rest[1]), nil, nil)
		}
		return usageError("warrenctl cluster: status or forget NODE\n" + usage)
	}
	return usageError("unknown command " + verb + "\n" + usage)
}

func (cmd *command) status() error {
	var o map[string]any
	if err := cmd.c.do("GET", "/overview", nil, &o); err != nil {
		return err
	}
	if cmd.json {
		return cmd.printJSON(o)
	}
	rows := [][]string{
		{"product", fmt.Sprint(o["product_name"], " ", o["product_version"])},
		{"rabbitmq_version", str(o["rabbitmq_version"])},
		{"node", str(o["node"])},
	}
	for _, k := range []string{"connections", "channels", "exchanges", "queues", "consumers"} {
		rows = append(rows, []string{k, str(lookup(o, "object_totals."+k))})
	}
	for _, k := range []string{"messages", "messages_ready", "messages_unacknowledged"} {
		rows = append(rows, []string{k, str(lookup(o, "queue_totals."+k))})
	}
	for _, k := range []string{"publish", "deliver_get", "ack"} {
		rows = append(rows, []string{k + "/s", str(lookup(o, "message_stats."+k+"_details.rate"))})
	}
	return cmd.table([]string{"field", "value"}, rows)
}

func (cmd *command) list(what string) error {
	cols, ok := listColumns[what]
	if !ok {
		return usageError("cannot list " + what + "\n" + usage)
	}
	path := "/" + what
	switch what {
	case "queues", "exchanges", "bindings", "consumers":
		path += "/" + seg(cmd.vhost)
	}
	var items []map[string]any
	if err := cmd.c.do("GET", path, nil, &items); err != nil {
		return err
	}
	if cmd.json {
		return cmd.printJSON(items)
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = str(lookup(it, c))
		}
		rows = append(rows, row)
	}
	return cmd.table(cols, rows)
}

// kindFlags parses a declare's flags.
func kindFlags(name string, args []string, define func(fs *flag.FlagSet)) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	define(fs)
	if err := fs.Parse(args); err != nil {
		return nil, usageError(name + ": " + err.Error())
	}
	return fs, nil
}

func (cmd *command) declare(kind, name string, args []string) error {
	vh := seg(cmd.vhost)
	switch kind {
	case "queue":
		var durable, autoDelete bool
		var arguments string
		if _, err := kindFlags("declare queue", args, func(fs *flag.FlagSet) {
			fs.BoolVar(&durable, "durable", false, "")
			fs.BoolVar(&autoDelete, "auto-delete", false, "")
			fs.StringVar(&arguments, "arguments", "{}", "")
		}); err != nil {
			return err
		}
		var a map[string]any
		if err := json.Unmarshal([]byte(arguments), &a); err != nil {
			return usageError("--arguments: " + err.Error())
		}
		return cmd.c.do("PUT", "/queues/"+vh+"/"+seg(name), map[string]any{"durable": durable, "auto_delete": autoDelete, "arguments": a}, nil)
	case "exchange":
		var durable, autoDelete, internal bool
		var typ string
		if _, err := kindFlags("declare exchange", args, func(fs *flag.FlagSet) {
			fs.StringVar(&typ, "type", "direct", "")
			fs.BoolVar(&durable, "durable", false, "")
			fs.BoolVar(&autoDelete, "auto-delete", false, "")
			fs.BoolVar(&internal, "internal", false, "")
		}); err != nil {
			return err
		}
		return cmd.c.do("PUT", "/exchanges/"+vh+"/"+seg(name), map[string]any{"type": typ, "durable": durable, "auto_delete": autoDelete, "internal": internal, "arguments": map[string]any{}}, nil)
	case "binding":
		if len(args) < 1 {
			return usageError("declare binding SOURCE DEST")
		}
		dest := args[0]
		var key, dtype string
		if _, err := kindFlags("declare binding", args[1:], func(fs *flag.FlagSet) {
			fs.StringVar(&key, "routing-key", "", "")
			fs.StringVar(&dtype, "destination-type", "queue", "")
		}); err != nil {
			return err
		}
		d := "q"
		if dtype == "exchange" {
			d = "e"
		}
		return cmd.c.do("POST", "/bindings/"+vh+"/e/"+seg(name)+"/"+d+"/"+seg(dest), map[string]any{"routing_key": key, "arguments": map[string]any{}}, nil)
	case "user":
		if len(args) < 1 {
			return usageError("add user NAME PASSWORD [--tags a,b]")
		}
		pass := args[0]
		var tags string
		if _, err := kindFlags("add user", args[1:], func(fs *flag.FlagSet) { fs.StringVar(&tags, "tags", "", "") }); err != nil {
			return err
		}
		return cmd.c.do("PUT", "/users/"+seg(name), map[string]any{"password": pass, "tags": tags}, nil)
	case "permissions":
		var conf, write, read string
		if _, err := kindFlags("set permissions", args, func(fs *flag.FlagSet) {
			fs.StringVar(&conf, "configure", ".*", "")
			fs.StringVar(&write, "write", ".*", "")
			fs.StringVar(&read, "read", ".*", "")
		}); err != nil {
			return err
		}
		return cmd.c.do("PUT", "/permissions/"+vh+"/"+seg(name), map[string]any{"configure": conf, "write": write, "read": read}, nil)
	}
	return usageError("cannot declare " + kind + "\n" + usage)
}

func (cmd *command) delete(kind, name string) error {
	vh := seg(cmd.vhost)
	switch kind {
	case "queue":
		return cmd.c.do("DELETE", "/queues/"+vh+"/"+seg(name), nil, nil)
	case "exchange":
		return cmd.c.do("DELETE", "/exchanges/"+vh+"/"+seg(name), nil, nil)
	case "user":
		return cmd.c.do("DELETE", "/users/"+seg(name), nil, nil)
	}
	return usageError("cannot delete " + kind + "\n" + usage)
}

func (cmd *command) publish(exchange, key, payload string) error {
	if exchange == "" {
		exchange = "amq.default"
	}
	var res map[string]any
	err := cmd.c.do("POST", "/exchanges/"+seg(cmd.vhost)+"/"+seg(exchange)+"/publish",
		map[string]any{"routing_key": key, "payload": payload, "payload_encoding": "string", "properties": map[string]any{}}, &res)
	if err != nil {
		return err
	}
	if cmd.json {
		return cmd.printJSON(res)
	}
	if res["routed"] == true {
		fmt.Fprintln(cmd.out, "routed")
	} else {
		fmt.Fprintln(cmd.out, "not routed")
	}
	return nil
}

func (cmd *command) get(queue string, args []string) error {
	var count int
	var requeue bool
	if _, err := kindFlags("get", args, func(fs *flag.FlagSet) {
		fs.IntVar(&count, "count", 1, "")
		fs.BoolVar(&requeue, "requeue", true, "")
	}); err != nil {
		return err
	}
	mode := "ack_requeue_false"
	if requeue {
		mode = "ack_requeue_true"
	}
	var msgs []map[string]any
	if err := cmd.c.do("POST", "/queues/"+seg(cmd.vhost)+"/"+seg(queue)+"/get",
		map[string]any{"count": count, "ackmode": mode, "encoding": "auto"}, &msgs); err != nil {
		return err
	}
	if cmd.json {
		return cmd.printJSON(msgs)
	}
	cols := []string{"routing_key", "exchange", "message_count", "redelivered", "payload_encoding", "payload"}
	rows := make([][]string, 0, len(msgs))
	for _, m := range msgs {
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = str(m[c])
		}
		rows = append(rows, row)
	}
	return cmd.table(cols, rows)
}

func (cmd *command) export(path string) error {
	var raw json.RawMessage
	if err := cmd.c.do("GET", "/definitions", nil, &raw); err != nil {
		return err
	}
	if path == "-" {
		_, err := cmd.out.Write(raw)
		return err
	}
	return os.WriteFile(path, raw, 0o600)
}

func (cmd *command) importDefs(path string) error {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return err
	}
	if !json.Valid(data) {
		return fmt.Errorf("%s: not JSON", path)
	}
	return cmd.c.do("POST", "/definitions", data, nil)
}

// ---- output

func (cmd *command) printJSON(v any) error {
	enc := json.NewEncoder(cmd.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (cmd *command) table(cols []string, rows [][]string) error {
	tw := tabwriter.NewWriter(cmd.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	sort.SliceStable(rows, func(i, j int) bool { return strings.Join(rows[i], "\x00") < strings.Join(rows[j], "\x00") })
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func lookup(o map[string]any, path string) any {
	var cur any = o
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = str(e)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
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
