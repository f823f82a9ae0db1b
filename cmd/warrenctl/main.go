// Command warrenctl manages a Warren (or RabbitMQ) node over its management HTTP API. Its
// commands are rabbitmqctl's and rabbitmq-diagnostics' with a space for the underscore
// (list_queues is `list queues`, set_policy is `set policy`, check_local_alarms is
// `check local-alarms`):
//
//	warrenctl status
//	warrenctl list queues
//	warrenctl declare queue jobs --durable
//	warrenctl publish amq.default jobs 'hello'
//	warrenctl get jobs --count 5
//	warrenctl add vhost orders && warrenctl set policy -p orders ttl '^' '{"message-ttl":60000}'
//	warrenctl add user app            (asks for the password, or reads it from stdin)
//	warrenctl check local-alarms      (exit status 1 when the check fails)
//	warrenctl cluster status
//	warrenctl node drain warren@a && systemctl stop warren   (then: warrenctl node revive warren@a)
//	warrenctl queues rebalance
//	warrenctl queues grow warren@d all; warrenctl queues shrink warren@a
//	warrenctl queues transfer-leader -p orders jobs warren@b
//	warrenctl --json list connections
//	warrenctl export defs.json && warrenctl import defs.json
//	warrenctl completion bash         (shell completion script)
//
// Global flags: --url (default http://127.0.0.1:15672, or WARRENCTL_URL), --user and
// --password (default guest/guest, or WARRENCTL_USER and WARRENCTL_PASSWORD), --vhost or -p
// (default /) and --json for the raw JSON instead of a table. `warrenctl help COMMAND` (or
// COMMAND --help) describes each command.
package main

import (
	"errors"
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

// usageError is a command line warrenctl cannot run (exit status 2).
type usageError string

func (e usageError) Error() string { return string(e) }

// run runs the command line args, printing to out and reading passwords from stdin.
func run(args []string, out io.Writer) error {
	return runWith(args, os.Stdin, out)
}

func runWith(args []string, in io.Reader, out io.Writer) error {
	root := newRoot(in, out)
	root.SetArgs(args)
	return root.Execute()
}
