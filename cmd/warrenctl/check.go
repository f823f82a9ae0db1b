package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// checkFailed is a health check that ran and failed (exit status 1, as rabbitmq-diagnostics).
type checkFailed struct{ reason string }

func (e *checkFailed) Error() string { return "check failed: " + e.reason }

// checkCmd is rabbitmq-diagnostics' checks: each asks the node's HTTP health check (or, for
// check_running and check_port_connectivity, the node itself) and exits 1 when it fails.
func (cmd *command) checkCmd() *cobra.Command {
	api := func(use, short, path string, ok func(map[string]any) string) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: noArgs,
			RunE: func(*cobra.Command, []string) error { return cmd.healthCheck(path, ok) }}
	}
	var within int
	var unit string
	certs := &cobra.Command{Use: "certificate-expiration", Short: "Fail if a TLS listener's certificate expires within --within --unit (rabbitmq-diagnostics check_certificate_expiration)", Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			return cmd.healthCheck(fmt.Sprintf("/health/checks/certificate-expiration/%d/%s", within, seg(unit)),
				func(map[string]any) string { return fmt.Sprintf("no certificate expires within %d %s", within, unit) })
		}}
	certs.Flags().IntVar(&within, "within", 4, "how many units ahead")
	certs.Flags().StringVar(&unit, "unit", "weeks", "days, weeks, months or years")
	certs.RegisterFlagCompletionFunc("unit", cobra.FixedCompletions([]string{"days", "weeks", "months", "years"}, cobra.ShellCompDirectiveNoFileComp))
	return group("check", "Health checks (rabbitmq-diagnostics check_*); exit status 1 when a check fails",
		&cobra.Command{Use: "running", Short: "Fail unless the node is up and answering (rabbitmq-diagnostics check_running)", Args: noArgs,
			RunE: func(*cobra.Command, []string) error { return cmd.checkRunning() }},
		api("local-alarms", "Fail if this node has a resource alarm (rabbitmq-diagnostics check_local_alarms)", "/health/checks/local-alarms",
			func(map[string]any) string { return "no local alarms" }),
		api("alarms", "Fail if any node of the cluster has a resource alarm (rabbitmq-diagnostics check_alarms)", "/health/checks/alarms",
			func(map[string]any) string { return "no alarms in the cluster" }),
		api("virtual-hosts", "Fail if a vhost is down on the node (rabbitmq-diagnostics check_virtual_hosts)", "/health/checks/virtual-hosts",
			func(map[string]any) string { return "all virtual hosts are running" }),
		&cobra.Command{Use: "port-listener PORT", Short: "Fail unless the node listens on PORT (rabbitmq-diagnostics check_port_listener)", Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.healthCheck("/health/checks/port-listener/"+seg(args[0]),
					func(map[string]any) string { return "a listener is bound to port " + args[0] })
			}},
		&cobra.Command{Use: "protocol-listener PROTOCOL", Short: "Fail unless the node has a listener for PROTOCOL: amqp, amqps, http, https, clustering (rabbitmq-diagnostics check_protocol_listener)", Args: nArgs(1, 1),
			RunE: func(_ *cobra.Command, args []string) error {
				return cmd.healthCheck("/health/checks/protocol-listener/"+seg(args[0]),
					func(o map[string]any) string {
						return fmt.Sprintf("a listener for protocol %s is running", str(o["protocol"]))
					})
			}},
		&cobra.Command{Use: "port-connectivity", Short: "Connect to each of the node's listeners over TCP (rabbitmq-diagnostics check_port_connectivity)", Args: noArgs,
			RunE: func(*cobra.Command, []string) error { return cmd.checkPortConnectivity() }},
		certs,
		&cobra.Command{Use: "quorum-critical", Aliases: []string{"if-node-is-quorum-critical"}, Args: noArgs,
			Short: "Fail if stopping the node would leave a replicated queue or the metadata store without a majority (rabbitmq-queues check_if_node_is_quorum_critical)",
			RunE: func(*cobra.Command, []string) error {
				return cmd.healthCheck("/health/checks/node-is-quorum-critical", func(o map[string]any) string {
					if r := str(o["reason"]); r != "" {
						return "the node is not quorum-critical: " + r
					}
					return "the node is not quorum-critical"
				})
			}},
	)
}

// healthCheck runs an HTTP health check: 200 prints okText's sentence, 503 prints what failed
// and returns checkFailed; anything else is an API error.
func (cmd *command) healthCheck(path string, okText func(map[string]any) string) error {
	code, data, err := cmd.c.get(path)
	if err != nil {
		return err
	}
	var o map[string]any
	if json.Unmarshal(data, &o) != nil {
		o = nil
	}
	switch code {
	case http.StatusOK:
		if cmd.json {
			return cmd.printJSON(o)
		}
		fmt.Fprintln(cmd.out, okText(o))
		return nil
	case http.StatusServiceUnavailable:
		if o == nil {
			return &checkFailed{reason: strings.TrimSpace(string(data))}
		}
		if err := cmd.printJSON(o); err != nil {
			return err
		}
		return &checkFailed{reason: str(o["reason"])}
	}
	reason := strings.TrimSpace(string(data))
	if o != nil && o["reason"] != nil {
		reason = str(o["reason"])
	}
	return &apiError{Status: code, Reason: reason}
}

// checkRunning asks the node's overview: it answers once the node serves its API.
func (cmd *command) checkRunning() error {
	var o map[string]any
	if err := cmd.c.do("GET", "/overview", nil, &o); err != nil {
		return &checkFailed{reason: "the node does not answer: " + err.Error()}
	}
	if cmd.json {
		return cmd.printJSON(map[string]any{"status": "ok", "node": o["node"]})
	}
	fmt.Fprintf(cmd.out, "node %s is running\n", str(o["node"]))
	return nil
}

// checkPortConnectivity opens a TCP connection to every listener of the node's overview, at
// the API's host when the listener is bound to every interface.
func (cmd *command) checkPortConnectivity() error {
	var o map[string]any
	if err := cmd.c.do("GET", "/overview", nil, &o); err != nil {
		return err
	}
	u, err := url.Parse(cmd.c.base)
	if err != nil {
		return err
	}
	var ok, failed []string
	ls, _ := o["listeners"].([]any)
	for _, l := range ls {
		m, _ := l.(map[string]any)
		if m == nil || str(m["node"]) != str(o["node"]) {
			continue
		}
		host := str(m["ip_address"])
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = u.Hostname()
		}
		addr := net.JoinHostPort(host, str(m["port"]))
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s (%s): %v", addr, str(m["protocol"]), err))
			continue
		}
		c.Close()
		ok = append(ok, str(m["port"]))
	}
	sort.Strings(ok)
	if len(failed) > 0 {
		return &checkFailed{reason: "cannot connect to " + strings.Join(failed, "; ")}
	}
	if len(ok) == 0 {
		return &checkFailed{reason: "the node lists no listener"}
	}
	if cmd.json {
		return cmd.printJSON(map[string]any{"status": "ok", "ports": ok})
	}
	fmt.Fprintf(cmd.out, "connected to the node's listeners on ports %s\n", strings.Join(ok, ", "))
	return nil
}
