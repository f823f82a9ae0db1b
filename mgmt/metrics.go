package mgmt

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/broker/session"
)

// Prometheus metrics at /metrics, named as RabbitMQ's rabbitmq_prometheus plugin names them
// so that its Grafana dashboards work: node-wide totals without labels, per-queue gauges
// labelled vhost and queue. Values are read from the broker at scrape time; nothing is kept
// between scrapes. The Go runtime and process collectors are registered beside them.
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

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descConnections = desc("rabbitmq_connections", "Connections currently open")
	descChannels    = desc("rabbitmq_channels", "Channels currently open")
	descQueues      = desc("rabbitmq_queues", "Queues available")
	descConsumers   = desc("rabbitmq_consumers", "Consumers currently connected")
	descReady       = desc("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers", "vhost", "queue")
	descUnacked     = desc("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged", "vhost", "queue")
	descQMessages   = desc("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages", "vhost", "queue")
	descQConsumers  = desc("rabbitmq_queue_consumers", "Consumers on a queue", "vhost", "queue")
	descQBytes      = desc("rabbitmq_queue_messages_ready_bytes", "Body bytes of ready messages", "vhost", "queue")
	descQDupes      = desc("warren_queue_duplicates_dropped_total", "Messages dropped by deduplication (x-message-deduplication)", "vhost", "queue")
	descXDupes      = desc("warren_exchange_duplicates_dropped_total", "Messages dropped by an exchange's deduplication (x-message-deduplication)", "vhost", "exchange")
	descQEncrypted  = desc("warren_queue_encrypted", "1 if the queue's messages are encrypted at rest", "vhost", "queue")
	descQPublished  = desc("rabbitmq_queue_messages_published_total", "Messages published into a queue", "vhost", "queue")
	descMem         = desc("rabbitmq_process_resident_memory_bytes", "Memory used by the broker process (Go runtime total)")
	descMemLimit    = desc("rabbitmq_resident_memory_limit_bytes", "Memory high watermark")
	descDiskFree    = desc("rabbitmq_disk_space_available_bytes", "Disk space available in the data folder")
	descDiskLimit   = desc("rabbitmq_disk_space_available_limit_bytes", "Free disk space low watermark")
	descAlarmMem    = desc("rabbitmq_alarms_memory_used_watermark", "1 if the memory alarm is in effect")
	descAlarmDisk   = desc("rabbitmq_alarms_free_disk_space_watermark", "1 if the free disk space alarm is in effect")
	descAlarmFD     = desc("rabbitmq_alarms_file_descriptor_limit", "1 if the file descriptor limit alarm is in effect (never raised yet)")
	descIdentity    = desc("rabbitmq_identity_info", "Node and cluster names", "rabbitmq_node", "rabbitmq_cluster")
	descBuild       = desc("rabbitmq_build_info", "Versions", "rabbitmq_version", "product_name", "product_version")
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

// brokerCollector reads the broker's state at scrape time.
type brokerCollector struct{ s *Server }

// Describe implements prometheus.Collector.
func (bc *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descChannels, descQueues, descConsumers,
		descReady, descUnacked, descQMessages, descQConsumers, descQBytes, descQPublished, descQDupes, descXDupes, descQEncrypted,
		descMem, descMemLimit, descDiskFree, descDiskLimit, descAlarmMem, descAlarmDisk, descAlarmFD,
		descIdentity, descBuild} {
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
	conns := s.b.Connections()
	channels := 0
	for _, c := range conns {
		channels += len(c.Channels())
	}
	gauge(descConnections, float64(len(conns)))
	gauge(descChannels, float64(channels))
	queues, consumers := 0, 0
	for _, vh := range s.b.VHosts() {
		for _, q := range vh.Queues() {
			in := q.Info()
			queues++
			consumers += in.Consumers
			gauge(descReady, float64(in.Ready), vh.Name, q.Name)
			gauge(descUnacked, float64(in.Unacked), vh.Name, q.Name)
			gauge(descQMessages, float64(in.Ready+in.Unacked), vh.Name, q.Name)
			gauge(descQConsumers, float64(in.Consumers), vh.Name, q.Name)
			gauge(descQBytes, float64(in.ReadyBytes), vh.Name, q.Name)
			ch <- prometheus.MustNewConstMetric(descQPublished, prometheus.CounterValue, float64(q.Stats().Published.Load()), vh.Name, q.Name)
			ch <- prometheus.MustNewConstMetric(descQDupes, prometheus.CounterValue, float64(q.Duplicates()), vh.Name, q.Name)
			gauge(descQEncrypted, boolGauge(q.Durable && !q.Exclusive && s.b.QueueEncrypted(vh.Name, q.Name)), vh.Name, q.Name)
		}
	}
	for _, vh := range s.b.VHosts() {
		for _, x := range vh.Exchanges() {
			if n, ok := vh.ExchangeDuplicates(x.Name); ok {
				ch <- prometheus.MustNewConstMetric(descXDupes, prometheus.CounterValue, float64(n), vh.Name, x.Name)
			}
		}
	}
	gauge(descQueues, float64(queues))
	gauge(descConsumers, float64(consumers))
	st := s.b.Stats().Snapshot()
	for k, d := range statMetrics {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(st[k]))
	}
	ns := s.readNodeStats()
	gauge(descMem, float64(ns.memUsed))
	gauge(descMemLimit, float64(ns.memLimit))
	gauge(descDiskFree, float64(ns.diskFree))
	gauge(descDiskLimit, float64(ns.diskLimit))
	gauge(descAlarmMem, boolGauge(ns.memAlarm))
	gauge(descAlarmDisk, boolGauge(ns.diskAlarm))
	gauge(descAlarmFD, 0)
	gauge(descIdentity, 1, s.cfg.Node, s.cfg.Node)
	gauge(descBuild, 1, CompatVersion, "Warren", broker.Version)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
