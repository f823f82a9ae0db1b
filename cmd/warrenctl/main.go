// Command warrenctl manages a Warren (or RabbitMQ) node over its management HTTP API.
//
//	warrenctl status
//	warrenctl list queues
//	warrenctl declare queue jobs --durable
//	warrenctl publish amq.default jobs 'hello'
//	warrenctl get jobs --count 5
//	warrenctl --json list connections
//	warrenctl export defs.json && warrenctl import defs.json
//
// Global flags (before the command): --url (default http://127.0.0.1:15672, or WARRENCTL_URL),
// --user and --password (default guest/guest), --vhost (default /) and --json for the raw
// JSON instead of a table.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "warrenctl:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }

const usage = `usage: warrenctl [--url URL] [--user U] [--password P] [--vhost V] [--json] COMMAND

commands:
  status                                    node overview
  list queues|exchanges|bindings|connections|channels|consumers|users|vhosts|permissions
  declare queue NAME [--durable] [--auto-delete] [--arguments JSON]
  declare exchange NAME [--type direct|fanout|topic|headers] [--durable] [--auto-delete] [--internal]
  declare binding SOURCE DEST [--routing-key K] [--destination-type queue|exchange]
  delete queue NAME | delete exchange NAME
  purge QUEUE
  publish EXCHANGE ROUTING_KEY PAYLOAD      (EXCHANGE amq.default for the default exchange)
  get QUEUE [--count N] [--requeue=false]
  close connection NAME
  export FILE                               definitions (- for stdout)
  import FILE                               definitions (- for stdin)
  add user NAME PASSWORD [--tags a,b]
  delete user NAME
  set permissions USER [--configure RE] [--write RE] [--read RE]
  cluster status                            members, their state and Raft role, the leader
  cluster forget NODE                       remove a stopped node from the cluster for good
`

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("warrenctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defURL := os.Getenv("WARRENCTL_URL")
	if defURL == "" {
		defURL = "http://127.0.0.1:15672"
	}
	c := &client{}
	fs.StringVar(&c.base, "url", defURL, "management API base URL")
	fs.StringVar(&c.user, "user", "guest", "user name")
	fs.StringVar(&c.pass, "password", "guest", "password")
	vhost := fs.String("vhost", "/", "virtual host")
	asJSON := fs.Bool("json", false, "print JSON instead of tables")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error() + "\n" + usage)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError(usage)
	}
	cmd := &command{c: c, out: out, vhost: *vhost, json: *asJSON}
	return cmd.dispatch(rest)
}
