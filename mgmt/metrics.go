package mgmt

import (
	"net/http"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/broker/session"
)

// Prometheus metrics, named, typed and labelled as RabbitMQ 3.10's rabbitmq_prometheus plugin
// does, so that its Grafana dashboards (RabbitMQ-Overview reads every series listed in
// testdata/rabbitmq-overview-series.txt) work unchanged: node totals without labels, RabbitMQ's
// global counters labelled protocol (and queue_type), per-queue gauges labelled vhost and queue
// (RabbitMQ's per-object form). Values are read from the broker's atomic counters at scrape
// time; nothing is kept between scrapes. The Go runtime and process collectors are registered
// beside them. They are served at /metrics of the management listener and, through
// PrometheusHandler, at /metrics and /metrics/per-object of their own listener.
//
// Storage metrics are left to the storage owner: cmd/warren can pass collectors through
// Config.Collectors, e.g. WAL bytes written (rabbitmq_io_write_bytes_total) and an fsync
// latency histogram (warren_wal_fsync_seconds) fed from the WAL's group-commit loop.

func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&brokerCollector{s: s},
	)
	for _, c := range s.cfg.Collectors {
		reg.MustRegister(c)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// PrometheusHandler serves the metrics alone, at /metrics and /metrics/per-object, as
// RabbitMQ's Prometheus port (15692) does.
func (s *Server) PrometheusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics)
	mux.Handle("GET /metrics/per-object", s.metrics)
	return mux
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descConnections  = desc("rabbitmq_connections", "Connections currently open")
	descChannels     = desc("rabbitmq_channels", "Channels currently open")
	descQueues       = desc("rabbitmq_queues", "Queues available")
	descConsumers    = desc("rabbitmq_consumers", "Consumers currently connected")
	descChConsumers  = desc("rabbitmq_channel_consumers", "Consumers on channels")
	descUnconfirmed  = desc("rabbitmq_channel_messages_unconfirmed", "Messages published on channels in confirm mode and not confirmed yet")
	descReady        = desc("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers", "vhost", "queue")
	descUnacked      = desc("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged", "vhost", "queue")
	descQMessages    = desc("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages", "vhost", "queue")
	descQConsumers   = desc("rabbitmq_queue_consumers", "Consumers on a queue", "vhost", "queue")
	descQBytes       = desc("rabbitmq_queue_messages_ready_bytes", "Body bytes of ready messages", "vhost", "queue")
	descQDupes       = desc("warren_queue_duplicates_dropped_total", "Messages dropped by deduplication (x-message-deduplication)", "vhost", "queue")
	descXDupes       = desc("warren_exchange_duplicates_dropped_total", "Messages dropped by an exchange's deduplication (x-message-deduplication)", "vhost", "exchange")
	descQEncrypted   = desc("warren_queue_encrypted", "1 if the queue's messages are encrypted at rest", "vhost", "queue")
	descQPublished   = desc("rabbitmq_queue_messages_published_total", "Messages published into a queue", "vhost", "queue")
	descMem          = desc("rabbitmq_process_resident_memory_bytes", "Resident memory of the broker process (RSS, the figure the memory alarm watches)")
	descMemLimit     = desc("rabbitmq_resident_memory_limit_bytes", "Memory high watermark")
	descDiskFree     = desc("rabbitmq_disk_space_available_bytes", "Disk space available in the data folder")
	descDiskLimit    = desc("rabbitmq_disk_space_available_limit_bytes", "Free disk space low watermark")
	descOpenFDs      = desc("rabbitmq_process_open_fds", "File descriptors open")
	descMaxFDs       = desc("rabbitmq_process_max_fds", "File descriptor limit")
	descOpenSockets  = desc("rabbitmq_process_open_tcp_sockets", "Client TCP sockets open")
	descMaxSockets   = desc("rabbitmq_process_max_tcp_sockets", "Client TCP socket limit (--max-connections, or the file descriptor limit)")
	descAlarmMem     = desc("rabbitmq_alarms_memory_used_watermark", "1 if the memory alarm is in effect")
	descAlarmDisk    = desc("rabbitmq_alarms_free_disk_space_watermark", "1 if the free disk space alarm is in effect")
	descAlarmFD      = desc("rabbitmq_alarms_file_descriptor_limit", "1 if the file descriptor limit alarm is in effect (never raised yet)")
	descIdentity     = desc("rabbitmq_identity_info", "Node and cluster names", "rabbitmq_node", "rabbitmq_cluster")
	descBuild        = desc("rabbitmq_build_info", "Versions: the RabbitMQ version mirrored, Warren's (as the plugin's), the Prometheus client's and the Go runtime's (as Erlang/OTP's)", "rabbitmq_version", "prometheus_plugin_version", "prometheus_client_version", "erlang_version", "product_name", "product_version")
	descConnsOpened  = desc("rabbitmq_connections_opened_total", "Connections opened")
	descConnsClosed  = desc("rabbitmq_connections_closed_total", "Connections closed or ended")
	descChansOpened  = desc("rabbitmq_channels_opened_total", "Channels opened")
	descChansClosed  = desc("rabbitmq_channels_closed_total", "Channels closed")
	descQDeclared    = desc("rabbitmq_queues_declared_total", "Queue declarations (not passive), redeclarations and refused ones included")
	descQCreated     = desc("rabbitmq_queues_created_total", "Queues created")
	descQDeleted     = desc("rabbitmq_queues_deleted_total", "Queues deleted")
	descGConsumers   = desc("rabbitmq_global_consumers", "Consumers currently connected", "protocol")
	descGReceived    = desc("rabbitmq_global_messages_received_total", "Messages received from publishers", "protocol")
	descGReceivedCf  = desc("rabbitmq_global_messages_received_confirm_total", "Messages received from publishers that asked for confirms", "protocol")
	descGRouted      = desc("rabbitmq_global_messages_routed_total", "Messages routed to at least one queue", "protocol")
	descGDropped     = desc("rabbitmq_global_messages_unroutable_dropped_total", "Messages published as non-mandatory that routed nowhere and were dropped", "protocol")
	descGReturned    = desc("rabbitmq_global_messages_unroutable_returned_total", "Messages published as mandatory that routed nowhere and were returned", "protocol")
	descGConfirmed   = desc("rabbitmq_global_messages_confirmed_total", "Messages confirmed to publishers", "protocol")
	descGDelivered   = desc("rabbitmq_global_messages_delivered_total", "Messages delivered to consumers (basic.deliver and basic.get-ok)", "protocol", "queue_type")
	descGConsumeAuto = desc("rabbitmq_global_messages_delivered_consume_auto_ack_total", "Messages delivered to basic.consume consumers with automatic acknowledgement", "protocol", "queue_type")
	descGConsumeMan  = desc("rabbitmq_global_messages_delivered_consume_manual_ack_total", "Messages delivered to basic.consume consumers with manual acknowledgement", "protocol", "queue_type")
	descGGetAuto     = desc("rabbitmq_global_messages_delivered_get_auto_ack_total", "Messages fetched with basic.get with automatic acknowledgement", "protocol", "queue_type")
	descGGetMan      = desc("rabbitmq_global_messages_delivered_get_manual_ack_total", "Messages fetched with basic.get with manual acknowledgement", "protocol", "queue_type")
	descGGetEmpty    = desc("rabbitmq_global_messages_get_empty_total", "basic.get that found no message", "protocol", "queue_type")
	descGRedelivered = desc("rabbitmq_global_messages_redelivered_total", "Messages delivered again (the redelivered flag set)", "protocol", "queue_type")
	descGAcked       = desc("rabbitmq_global_messages_acknowledged_total", "Messages acknowledged by consumers", "protocol", "queue_type")
)

// statMetrics names the node's message counters as RabbitMQ's aggregated channel metrics.
var statMetrics = map[session.Stat]*prometheus.Desc{
	session.StatPublish:          desc("rabbitmq_channel_messages_published_total", "Messages published into an exchange on a channel"),
	session.StatConfirm:          desc("rabbitmq_channel_messages_confirmed_total", "Messages published into an exchange and confirmed on the channel"),
	session.StatReturnUnroutable: desc("rabbitmq_channel_messages_unroutable_returned_total", "Messages published as mandatory into an exchange and returned to the publisher as unroutable"),
	session.StatDropUnroutable:   desc("rabbitmq_channel_messages_unroutable_dropped_total", "Messages published as non-mandatory into an exchange and dropped as unroutable"),
	session.StatDeliver:          desc("rabbitmq_channel_messages_delivered_ack_total", "Messages delivered to consumers in manual acknowledgement mode"),
	session.StatDeliverNoAck:     desc("rabbitmq_channel_messages_delivered_total", "Messages delivered to consumers in automatic acknowledgement mode"),
	session.StatGet:              desc("rabbitmq_channel_get_ack_total", "Messages fetched with basic.get in manual acknowledgement mode"),
	session.StatGetNoAck:         desc("rabbitmq_channel_get_total", "Messages fetched with basic.get in automatic acknowledgement mode"),
	session.StatGetEmpty:         desc("rabbitmq_channel_get_empty_total", "Times basic.get found no message"),
	session.StatAck:              desc("rabbitmq_channel_messages_acked_total", "Messages acknowledged by consumers"),
	session.StatRedeliver:        desc("rabbitmq_channel_messages_redelivered_total", "Messages redelivered to consumers"),
}

// The global counters' labels: Warren speaks AMQP 0-9-1 only, and does not split its
// delivery counters by queue type, so one series holds every queue type's count.
const (
	protocolAMQP091 = "amqp091"
	queueTypeAll    = "rabbit_classic_queue"
)

// brokerCollector reads the broker's state at scrape time.
type brokerCollector struct{ s *Server }

// Describe implements prometheus.Collector.
func (bc *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descChannels, descQueues, descConsumers, descChConsumers, descUnconfirmed,
		descReady, descUnacked, descQMessages, descQConsumers, descQBytes, descQPublished, descQDupes, descXDupes, descQEncrypted,
		descMem, descMemLimit, descDiskFree, descDiskLimit, descOpenFDs, descMaxFDs, descOpenSockets, descMaxSockets,
		descAlarmMem, descAlarmDisk, descAlarmFD, descIdentity, descBuild,
		descConnsOpened, descConnsClosed, descChansOpened, descChansClosed, descQDeclared, descQCreated, descQDeleted,
		descGConsumers, descGReceived, descGReceivedCf, descGRouted, descGDropped, descGReturned, descGConfirmed,
		descGDelivered, descGConsumeAuto, descGConsumeMan, descGGetAuto, descGGetMan, descGGetEmpty, descGRedelivered, descGAcked} {
		ch <- d
	}
	for _, d := range statMetrics {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (bc *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	s := bc.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	untyped := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.UntypedValue, v, labels...)
	}
	conns := s.b.Connections()
	channels := 0
	var unconfirmed uint64
	for _, c := range conns {
		for _, chn := range c.Channels() {
			channels++
			unconfirmed += chn.Unconfirmed()
		}
	}
	gauge(descConnections, float64(len(conns)))
	gauge(descChannels, float64(channels))
	gauge(descUnconfirmed, float64(unconfirmed))
	queues, consumers := 0, 0
	for _, vh := range s.b.VHosts() {
		for _, q := range vh.Queues() {
			if vh.Ref(q) != q.Ref() {
				continue // a node's scrape reports its own queues (RabbitMQ's per-node metrics)
			}
			in := q.Info()
			queues++
			consumers += in.Consumers
			gauge(descReady, float64(in.Ready), vh.Name, q.Name)
			gauge(descUnacked, float64(in.Unacked), vh.Name, q.Name)
			gauge(descQMessages, float64(in.Ready+in.Unacked), vh.Name, q.Name)
			gauge(descQConsumers, float64(in.Consumers), vh.Name, q.Name)
			gauge(descQBytes, float64(in.ReadyBytes), vh.Name, q.Name)
			counter(descQPublished, q.Stats().Published.Load(), vh.Name, q.Name)
			counter(descQDupes, q.Duplicates(), vh.Name, q.Name)
			gauge(descQEncrypted, boolGauge(q.Durable && !q.Exclusive && s.b.QueueEncrypted(vh.Name, q.Name)), vh.Name, q.Name)
		}
	}
	for _, vh := range s.b.VHosts() {
		for _, x := range vh.Exchanges() {
			if n, ok := vh.ExchangeDuplicates(x.Name); ok {
				counter(descXDupes, n, vh.Name, x.Name)
			}
		}
	}
	gauge(descQueues, float64(queues))
	gauge(descConsumers, float64(consumers))
	gauge(descChConsumers, float64(consumers)) // every consumer is a channel's
	gauge(descGConsumers, float64(consumers), protocolAMQP091)

	stats := s.b.Stats()
	st := stats.Snapshot()
	for k, d := range statMetrics {
		counter(d, st[k])
	}
	p := protocolAMQP091
	counter(descGReceived, st[session.StatPublish], p)
	counter(descGReceivedCf, stats.ReceivedConfirm.Load(), p)
	counter(descGRouted, stats.Routed.Load(), p)
	counter(descGDropped, st[session.StatDropUnroutable], p)
	counter(descGReturned, st[session.StatReturnUnroutable], p)
	counter(descGConfirmed, st[session.StatConfirm], p)
	counter(descGDelivered, st[session.StatDeliver]+st[session.StatDeliverNoAck]+st[session.StatGet]+st[session.StatGetNoAck], p, queueTypeAll)
	counter(descGConsumeAuto, st[session.StatDeliverNoAck], p, queueTypeAll)
	counter(descGConsumeMan, st[session.StatDeliver], p, queueTypeAll)
	counter(descGGetAuto, st[session.StatGetNoAck], p, queueTypeAll)
	counter(descGGetMan, st[session.StatGet], p, queueTypeAll)
	counter(descGGetEmpty, st[session.StatGetEmpty], p, queueTypeAll)
	counter(descGRedelivered, st[session.StatRedeliver], p, queueTypeAll)
	counter(descGAcked, st[session.StatAck], p, queueTypeAll)

	churn := s.b.Churn()
	counter(descConnsOpened, churn.ConnectionsOpened.Load())
	counter(descConnsClosed, churn.ConnectionsClosed.Load())
	counter(descChansOpened, churn.ChannelsOpened.Load())
	counter(descChansClosed, churn.ChannelsClosed.Load())
	counter(descQDeclared, churn.Queues.Declared.Load())
	counter(descQCreated, churn.Queues.Created.Load())
	counter(descQDeleted, churn.Queues.Deleted.Load())

	ns := s.readNodeStats()
	gauge(descMem, float64(ns.memUsed))
	gauge(descMemLimit, float64(ns.memLimit))
	gauge(descDiskFree, float64(ns.diskFree))
	gauge(descDiskLimit, float64(ns.diskLimit))
	gauge(descOpenFDs, float64(ns.fdUsed))
	gauge(descMaxFDs, float64(ns.fdTotal))
	gauge(descOpenSockets, float64(s.b.TCPSockets()))
	maxSockets := ns.fdTotal
	if m := s.b.Config().MaxConnections; m > 0 {
		maxSockets = m
	}
	gauge(descMaxSockets, float64(maxSockets))
	untyped(descAlarmMem, boolGauge(ns.memAlarm))
	untyped(descAlarmDisk, boolGauge(ns.diskAlarm))
	untyped(descAlarmFD, 0)
	untyped(descIdentity, 1, s.cfg.Node, s.cfg.Node)
	untyped(descBuild, 1, CompatVersion, broker.Version, promClientVersion, runtime.Version(), "Warren", broker.Version)
}

// promClientVersion is the version of the Prometheus client library built in.
var promClientVersion = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/prometheus/client_golang" {
				return d.Version
			}
		}
	}
	return "unknown"
}()

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
