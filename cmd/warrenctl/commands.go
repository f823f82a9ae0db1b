package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// command is what every command runs with: the API client and the global flags.
type command struct {
	c     *client
	in    io.Reader
	out   io.Writer
	vhost string
	json  bool
}

// newRoot builds the command tree. Each group of commands is a function of its own (lists,
// declarations, settings, checks, cluster), so that new ones (node drain/revive, queue
// membership) are one more constructor added here.
func newRoot(in io.Reader, out io.Writer) *cobra.Command {
	cmd := &command{c: &client{}, in: in, out: out}
	root := &cobra.Command{
		Use:   "warrenctl",
		Short: "Manage a Warren (or RabbitMQ) node over its management HTTP API",
		Long: `warrenctl manages a Warren (or RabbitMQ) node over its management HTTP API.

Its commands are rabbitmqctl's and rabbitmq-diagnostics' with a space for the underscore:
list_queues is "list queues", set_policy is "set policy", check_local_alarms is
"check local-alarms". Output is a table, or the API's JSON with --json.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown command " + args[0] + "\n\n" + c.UsageString())
			}
			return usageError(c.UsageString())
		},
	}
	root.SetIn(in)
	root.SetOut(out)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(c.CommandPath() + ": " + err.Error() + "\n\n" + c.UsageString())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&cmd.c.base, "url", envOr("WARRENCTL_URL", "http://127.0.0.1:15672"), "management API base URL (WARRENCTL_URL)")
	pf.StringVar(&cmd.c.user, "user", envOr("WARRENCTL_USER", "guest"), "user name (WARRENCTL_USER)")
	pf.StringVar(&cmd.c.pass, "password", envOr("WARRENCTL_PASSWORD", "guest"), "password (WARRENCTL_PASSWORD)")
	pf.StringVarP(&cmd.vhost, "vhost", "p", "/", "virtual host")
	pf.BoolVar(&cmd.json, "json", false, "print the API's JSON instead of a table")

	root.AddCommand(
		&cobra.Command{Use: "status", Short: "Node overview (rabbitmqctl status)", Args: noArgs,
			RunE: func(*cobra.Command, []string) error { return cmd.status() }},
		cmd.listCmd(),
		cmd.verbCmd("declare", "Declare a queue, an exchange or a binding", "queue", "exchange", "binding"),
		cmd.verbCmd("add", "Add a user or a vhost (rabbitmqctl add_user, add_vhost)", "user", "vhost"),
		cmd.verbCmd("set", "Set permissions, topic permissions, a policy, limits or user tags", "permissions", "topic-permissions", "policy", "vhost-limits", "user-limits", "user-tags"),
		cmd.clearCmd(),
		cmd.deleteCmd(),
		cmd.changeCmd(),
		cmd.purgeCmd(),
		cmd.publishCmd(),
		cmd.getCmd(),
		cmd.closeCmd(),
		cmd.exportCmd(),
		cmd.importCmd(),
		cmd.checkCmd(),
		cmd.clusterCmd(),
		cmd.nodeCmd(),
		cmd.queuesCmd(),
	)
	return root
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Argument checks that answer with a usage error (exit status 2).
func noArgs(c *cobra.Command, args []string) error { return nArgs(0, 0)(c, args) }

func nArgs(least, most int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < least || most >= 0 && len(args) > most {
			return usageError(fmt.Sprintf("%s: wrong number of arguments (%d)\n\n%s", c.CommandPath(), len(args), c.UsageString()))
		}
		return nil
	}
}

// group is a command whose subcommands do the work: run bare or with an unknown subcommand it
// is a usage error.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Sprintf("%s: unknown %q\n\n%s", c.CommandPath(), args[0], c.UsageString()))
			}
			return usageError(c.UsageString())
		}}
	g.AddCommand(subs...)
	return g
}

// ---- list

// listColumns are the table columns of each list, dotted paths into the JSON.
var listColumns = map[string][]string{
	"queues":            {"vhost", "name", "type", "durable", "messages_ready", "messages_unacknowledged", "consumers", "message_stats.publish_details.rate"},
	"exchanges":         {"vhost", "name", "type", "durable", "auto_delete", "internal"},
	"bindings":          {"vhost", "source", "destination", "destination_type", "routing_key", "properties_key"},
	"connections":       {"name", "user", "vhost", "channels", "state", "recv_oct", "send_oct"},
	"channels":          {"name", "user", "vhost", "prefetch_count", "consumer_count", "messages_unacknowledged", "confirm"},
	"consumers":         {"queue.vhost", "queue.name", "consumer_tag", "channel_details.name", "ack_required", "prefetch_count"},
	"users":             {"name", "tags"},
	"vhosts":            {"name", "messages"},
	"permissions":       {"user", "vhost", "configure", "write", "read"},
	"topic-permissions": {"user", "vhost", "exchange", "write", "read"},
	"policies":          {"vhost", "name", "pattern", "apply-to", "definition", "priority"},
	"vhost-limits":      {"vhost", "value"},
	"user-limits":       {"user", "value"},
}

// listPaths are the API paths of the lists that depend on --vhost (the others are node-wide).
var listPaths = map[string]string{
	"queues": "/queues/{vhost}", "exchanges": "/exchanges/{vhost}", "bindings": "/bindings/{vhost}",
	"consumers": "/consumers/{vhost}", "policies": "/policies/{vhost}", "vhost-limits": "/vhost-limits/{vhost}",
}

func (cmd *command) listCmd() *cobra.Command {
	kinds := make([]string, 0, len(listColumns))
	for k := range listColumns {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var subs []*cobra.Command
	for _, k := range kinds {
		scope := "node-wide"
		if _, ok := listPaths[k]; ok {
			scope = "in --vhost"
		}
		subs = append(subs, &cobra.Command{Use: k, Short: fmt.Sprintf("List %s, %s (rabbitmqctl list_%s)", k, scope, strings.ReplaceAll(k, "-", "_")),
			Args: noArgs, RunE: func(*cobra.Command, []string) error { return cmd.list(k) }})
	}
	return group("list", "List queues, exchanges, bindings, connections, users, vhosts, permissions, policies, limits...", subs...)
}

func (cmd *command) list(what string) error {
	cols := listColumns[what]
	path := "/" + what
	if p, ok := listPaths[what]; ok {
		path = strings.ReplaceAll(p, "{vhost}", seg(cmd.vhost))
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

// ---- declare / add / set

// verbCmd is declare, add or set with its kinds. For compatibility with warrenctl's first
// versions, which took any of the three verbs with any of queue, exchange, binding, user and
// permissions, those five are also under the other two verbs (hidden from help).
func (cmd *command) verbCmd(verb, short string, kinds ...string) *cobra.Command {
	own := map[string]bool{}
	for _, k := range kinds {
		own[k] = true
	}
	var subs []*cobra.Command
	for _, k := range kinds {
		subs = append(subs, cmd.kindCmd(k))
	}
	for _, k := range []string{"queue", "exchange", "binding", "user", "permissions"} {
		if !own[k] {
			c := cmd.kindCmd(k)
			c.Hidden = true
			subs = append(subs, c)
		}
	}
	return group(verb, short, subs...)
}

// kindCmd is the subcommand of declare/add/set for kind.
func (cmd *command) kindCmd(kind string) *cobra.Command {
	switch kind {
	case "queue":
		var durable, autoDelete bool
		var arguments, queueType string
		c := &cobra.Command{Use: "queue NAME", Short: "Declare a queue in --vhost", Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				a := map[string]any{}
				if err := json.Unmarshal([]byte(arguments), &a); err != nil {
					return usageError("--arguments: " + err.Error())
				}
				if queueType != "" {
					a["x-queue-type"] = queueType
				}
				return cmd.c.do("PUT", "/queues/"+seg(cmd.vhost)+"/"+seg(args[0]), map[string]any{"durable": durable, "auto_delete": autoDelete, "arguments": a}, nil)
			}}
		c.Flags().BoolVar(&durable, "durable", false, "survives a restart")
		c.Flags().BoolVar(&autoDelete, "auto-delete", false, "deleted when its last consumer goes")
		c.Flags().StringVar(&arguments, "arguments", "{}", "queue arguments as JSON, e.g. '{\"x-max-length\": 10}'")
		c.Flags().StringVar(&queueType, "type", "", "x-queue-type: classic, quorum or stream")
		return c
	case "exchange":
		var durable, autoDelete, internal bool
		var typ string
		c := &cobra.Command{Use: "exchange NAME", Short: "Declare an exchange in --vhost", Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("PUT", "/exchanges/"+seg(cmd.vhost)+"/"+seg(args[0]), map[string]any{"type": typ, "durable": durable, "auto_delete": autoDelete, "internal": internal, "arguments": map[string]any{}}, nil)
			}}
		c.Flags().StringVar(&typ, "type", "direct", "direct, fanout, topic or headers")
		c.Flags().BoolVar(&durable, "durable", false, "survives a restart")
		c.Flags().BoolVar(&autoDelete, "auto-delete", false, "deleted when its last binding goes")
		c.Flags().BoolVar(&internal, "internal", false, "clients cannot publish to it")
		c.RegisterFlagCompletionFunc("type", cobra.FixedCompletions([]string{"direct", "fanout", "topic", "headers"}, cobra.ShellCompDirectiveNoFileComp))
		return c
	case "binding":
		var key, dtype string
		c := &cobra.Command{Use: "binding SOURCE DEST", Short: "Bind queue (or exchange) DEST to exchange SOURCE in --vhost", Args: nArgs(2, 2),
			RunE: func(_ *cobra.Command, args []string) error {
				d := "q"
				switch dtype {
				case "queue":
				case "exchange":
					d = "e"
				default:
					return usageError("--destination-type: queue or exchange")
				}
				return cmd.c.do("POST", "/bindings/"+seg(cmd.vhost)+"/e/"+seg(args[0])+"/"+d+"/"+seg(args[1]), map[string]any{"routing_key": key, "arguments": map[string]any{}}, nil)
			}}
		c.Flags().StringVar(&key, "routing-key", "", "routing key")
		c.Flags().StringVar(&dtype, "destination-type", "queue", "queue or exchange")
		return c
	case "user":
		var tags string
		var fromStdin bool
		c := &cobra.Command{Use: "user NAME [PASSWORD]", Short: "Add a user (rabbitmqctl add_user); without PASSWORD it is asked for, or read from stdin", Args: nArgs(1, 2),
			RunE: func(_ *cobra.Command, args []string) error {
				pass, err := cmd.password(args[1:], fromStdin)
				if err != nil {
					return err
				}
				return cmd.c.do("PUT", "/users/"+seg(args[0]), map[string]any{"password": pass, "tags": tags}, nil)
			}}
		c.Flags().StringVar(&tags, "tags", "", "comma-separated tags: administrator, monitoring, policymaker, management")
		c.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of stdin")
		return c
	case "vhost":
		return &cobra.Command{Use: "vhost NAME", Short: "Add a vhost (rabbitmqctl add_vhost); you get full permissions on it", Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("PUT", "/vhosts/"+seg(args[0]), map[string]any{}, nil)
			}}
	case "permissions":
		var conf, write, read string
		c := &cobra.Command{Use: "permissions USER", Short: "Set a user's permissions in --vhost (rabbitmqctl set_permissions)", Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("PUT", "/permissions/"+seg(cmd.vhost)+"/"+seg(args[0]), map[string]any{"configure": conf, "write": write, "read": read}, nil)
			}}
		c.Flags().StringVar(&conf, "configure", ".*", "configure regular expression")
		c.Flags().StringVar(&write, "write", ".*", "write regular expression")
		c.Flags().StringVar(&read, "read", ".*", "read regular expression")
		return c
	case "topic-permissions":
		return &cobra.Command{Use: "topic-permissions USER EXCHANGE WRITE READ", Short: "Set a user's topic permissions on a topic exchange of --vhost (rabbitmqctl set_topic_permissions)", Args: nArgs(4, 4),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("PUT", "/topic-permissions/"+seg(cmd.vhost)+"/"+seg(args[0]), map[string]any{"exchange": args[1], "write": args[2], "read": args[3]}, nil)
			}}
	case "policy":
		var priority int
		var applyTo string
		c := &cobra.Command{Use: "policy NAME PATTERN DEFINITION", Short: "Set a policy in --vhost (rabbitmqctl set_policy); DEFINITION is JSON", Args: nArgs(3, 3),
			RunE: func(_ *cobra.Command, args []string) error {
				var def map[string]any
				if err := json.Unmarshal([]byte(args[2]), &def); err != nil {
					return usageError("DEFINITION: " + err.Error())
				}
				return cmd.c.do("PUT", "/policies/"+seg(cmd.vhost)+"/"+seg(args[0]), map[string]any{"pattern": args[1], "definition": def, "priority": priority, "apply-to": applyTo}, nil)
			}}
		c.Flags().IntVar(&priority, "priority", 0, "priority (the highest applies)")
		c.Flags().StringVar(&applyTo, "apply-to", "all", "queues, exchanges or all")
		c.RegisterFlagCompletionFunc("apply-to", cobra.FixedCompletions([]string{"queues", "exchanges", "all"}, cobra.ShellCompDirectiveNoFileComp))
		return c
	case "vhost-limits":
		return &cobra.Command{Use: "vhost-limits DEFINITION", Short: `Set --vhost's limits (rabbitmqctl set_vhost_limits), e.g. '{"max-connections": 100, "max-queues": 10}'; -1 is no limit`, Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.setLimits("/vhost-limits/"+seg(cmd.vhost)+"/", args[0])
			}}
	case "user-limits":
		return &cobra.Command{Use: "user-limits USER DEFINITION", Short: `Set a user's limits (rabbitmqctl set_user_limits), e.g. '{"max-connections": 10, "max-channels": 20}'; -1 is no limit`, Args: nArgs(2, 2),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.setLimits("/user-limits/"+seg(args[0])+"/", args[1])
			}}
	case "user-tags":
		return &cobra.Command{Use: "user-tags USER [TAG...]", Short: "Replace a user's tags (rabbitmqctl set_user_tags); none clears them", Args: nArgs(1, -1),
			RunE: func(_ *cobra.Command, args []string) error {
				var u map[string]any
				if err := cmd.c.do("GET", "/users/"+seg(args[0]), nil, &u); err != nil {
					return err
				}
				// The password stays: the same hash goes back.
				body := map[string]any{"tags": strings.Join(args[1:], ","), "password_hash": u["password_hash"], "hashing_algorithm": u["hashing_algorithm"]}
				return cmd.c.do("PUT", "/users/"+seg(args[0]), body, nil)
			}}
	}
	panic("warrenctl: unknown kind " + kind)
}

// setLimits sets each limit of a JSON object {"name": value} under path (PUT path+name).
func (cmd *command) setLimits(path, definition string) error {
	var def map[string]json.Number
	if err := json.Unmarshal([]byte(definition), &def); err != nil {
		return usageError("DEFINITION: a JSON object of numbers: " + err.Error())
	}
	names := make([]string, 0, len(def))
	for k := range def {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := cmd.c.do("PUT", path+seg(k), map[string]any{"value": def[k]}, nil); err != nil {
			return err
		}
	}
	return nil
}

// ---- clear / delete / change

func (cmd *command) clearCmd() *cobra.Command {
	return group("clear", "Clear permissions, topic permissions, a policy or limits",
		&cobra.Command{Use: "permissions USER", Short: "Clear a user's permissions in --vhost (rabbitmqctl clear_permissions)", Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("DELETE", "/permissions/"+seg(cmd.vhost)+"/"+seg(args[0]), nil, nil)
			}},
		&cobra.Command{Use: "topic-permissions USER", Short: "Clear a user's topic permissions in --vhost (rabbitmqctl clear_topic_permissions)", Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("DELETE", "/topic-permissions/"+seg(cmd.vhost)+"/"+seg(args[0]), nil, nil)
			}},
		&cobra.Command{Use: "policy NAME", Short: "Clear a policy in --vhost (rabbitmqctl clear_policy)", Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("DELETE", "/policies/"+seg(cmd.vhost)+"/"+seg(args[0]), nil, nil)
			}},
		&cobra.Command{Use: "vhost-limits [LIMIT|all]", Short: "Clear --vhost's limits, or one of them (rabbitmqctl clear_vhost_limits)", Args: nArgs(0, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.clearLimits("/vhost-limits/"+seg(cmd.vhost)+"/", args, "max-connections", "max-queues")
			}},
		&cobra.Command{Use: "user-limits USER LIMIT|all", Short: "Clear a user's limit, or all of them (rabbitmqctl clear_user_limits)", Args: nArgs(2, 2),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.clearLimits("/user-limits/"+seg(args[0])+"/", args[1:], "max-connections", "max-channels")
			}},
	)
}

// clearLimits deletes the limit named in args (all of names when none or "all").
func (cmd *command) clearLimits(path string, args []string, names ...string) error {
	if len(args) > 0 && args[0] != "all" {
		names = args[:1]
	}
	for _, n := range names {
		if err := cmd.c.do("DELETE", path+seg(n), nil, nil); err != nil {
			return err
		}
	}
	return nil
}

func (cmd *command) deleteCmd() *cobra.Command {
	del := func(kind, short, path string, complete string) *cobra.Command {
		return &cobra.Command{Use: kind + " NAME", Short: short, Args: nArgs(1, 1),
			ValidArgsFunction: cmd.completeNames(complete),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("DELETE", strings.ReplaceAll(path, "{vhost}", seg(cmd.vhost))+seg(args[0]), nil, nil)
			}}
	}
	return group("delete", "Delete a queue, an exchange, a user or a vhost",
		del("queue", "Delete a queue of --vhost (rabbitmqctl delete_queue)", "/queues/{vhost}/", "queues"),
		del("exchange", "Delete an exchange of --vhost", "/exchanges/{vhost}/", "exchanges"),
		del("user", "Delete a user (rabbitmqctl delete_user)", "/users/", "users"),
		del("vhost", "Delete a vhost and everything in it (rabbitmqctl delete_vhost)", "/vhosts/", "vhosts"),
	)
}

func (cmd *command) changeCmd() *cobra.Command {
	var fromStdin bool
	pw := &cobra.Command{Use: "password USER [PASSWORD]", Short: "Change a user's password (rabbitmqctl change_password); without PASSWORD it is asked for, or read from stdin", Args: nArgs(1, 2),
		ValidArgsFunction: cmd.completeNames("users"),
		RunE: func(_ *cobra.Command, args []string) error {
			var u map[string]any
			if err := cmd.c.do("GET", "/users/"+seg(args[0]), nil, &u); err != nil {
				return err
			}
			pass, err := cmd.password(args[1:], fromStdin)
			if err != nil {
				return err
			}
			return cmd.c.do("PUT", "/users/"+seg(args[0]), map[string]any{"password": pass, "tags": u["tags"]}, nil)
		}}
	pw.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of stdin")
	return group("change", "Change a user's password", pw)
}

// completeNames completes the names of a list of --vhost (or node-wide) from the API.
func (cmd *command) completeNames(what string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		path := "/" + what
		if p, ok := listPaths[what]; ok {
			path = strings.ReplaceAll(p, "{vhost}", seg(cmd.vhost))
		}
		var items []map[string]any
		if cmd.c.do("GET", path, nil, &items) != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, it := range items {
			names = append(names, str(it["name"]))
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// ---- messages and connections

func (cmd *command) purgeCmd() *cobra.Command {
	return &cobra.Command{Use: "purge QUEUE", Short: "Remove a queue's ready messages (rabbitmqctl purge_queue)", Args: nArgs(1, 1),
		ValidArgsFunction: cmd.completeNames("queues"),
		RunE: func(_ *cobra.Command, args []string) error {
			return cmd.c.do("DELETE", "/queues/"+seg(cmd.vhost)+"/"+seg(args[0])+"/contents", nil, nil)
		}}
}

func (cmd *command) publishCmd() *cobra.Command {
	return &cobra.Command{Use: "publish EXCHANGE ROUTING_KEY PAYLOAD", Short: "Publish a message (EXCHANGE amq.default or \"\" for the default exchange)", Args: nArgs(3, 3),
		RunE: func(_ *cobra.Command, args []string) error {
			exchange := args[0]
			if exchange == "" {
				exchange = "amq.default"
			}
			var res map[string]any
			err := cmd.c.do("POST", "/exchanges/"+seg(cmd.vhost)+"/"+seg(exchange)+"/publish",
				map[string]any{"routing_key": args[1], "payload": args[2], "payload_encoding": "string", "properties": map[string]any{}}, &res)
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
		}}
}

func (cmd *command) getCmd() *cobra.Command {
	var count int
	var requeue bool
	c := &cobra.Command{Use: "get QUEUE", Short: "Get messages from a queue (requeued unless --requeue=false)", Args: nArgs(1, 1),
		ValidArgsFunction: cmd.completeNames("queues"),
		RunE: func(_ *cobra.Command, args []string) error {
			mode := "ack_requeue_false"
			if requeue {
				mode = "ack_requeue_true"
			}
			var msgs []map[string]any
			if err := cmd.c.do("POST", "/queues/"+seg(cmd.vhost)+"/"+seg(args[0])+"/get",
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
		}}
	c.Flags().IntVar(&count, "count", 1, "how many messages")
	c.Flags().BoolVar(&requeue, "requeue", true, "put the messages back")
	return c
}

func (cmd *command) closeCmd() *cobra.Command {
	return group("close", "Close a client connection",
		&cobra.Command{Use: "connection NAME", Short: "Close a client connection (rabbitmqctl close_connection)", Args: nArgs(1, 1),
			ValidArgsFunction: cmd.completeNames("connections"),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.c.do("DELETE", "/connections/"+seg(args[0]), nil, nil)
			}})
}

// ---- definitions

func (cmd *command) exportCmd() *cobra.Command {
	return &cobra.Command{Use: "export FILE", Short: "Export the definitions (rabbitmqctl export_definitions; - for stdout)", Args: nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			var raw json.RawMessage
			if err := cmd.c.do("GET", "/definitions", nil, &raw); err != nil {
				return err
			}
			if args[0] == "-" {
				_, err := cmd.out.Write(raw)
				return err
			}
			return os.WriteFile(args[0], raw, 0o600)
		}}
}

func (cmd *command) importCmd() *cobra.Command {
	return &cobra.Command{Use: "import FILE", Short: "Import definitions (rabbitmqctl import_definitions; - for stdin)", Args: nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(cmd.in)
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			if !json.Valid(data) {
				return fmt.Errorf("%s: not JSON", args[0])
			}
			return cmd.c.do("POST", "/definitions", data, nil)
		}}
}

// ---- status and cluster

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
	case map[string]any:
		data, _ := json.Marshal(x)
		return string(data)
	}
	return fmt.Sprint(v)
}
