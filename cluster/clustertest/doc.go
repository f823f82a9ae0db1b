// Package clustertest starts real warren processes, injects faults into them and checks what
// their clients saw, as Jepsen does: every publish, confirm, nack, delivery and ack is recorded
// with its time, and a pure checker (Check) reports confirmed messages that were never
// delivered, deliveries of messages never published, unflagged duplicates, publisher order among
// first deliveries and, per fault, the time to the next confirm and delivery.
//
// It drives warren from the outside only (flags, signals, sockets, the management API) and
// imports none of Warren's packages. As root with the ip tool, each node runs in a network
// namespace of its own behind a router namespace, where partitions are silent packet drops
// (ip rule ... blackhole); elsewhere nodes run on loopback ports and only the faults that need
// no namespace are offered (Cluster.Supported says which). docs/chaos.md describes the design.
//
//	c, err := clustertest.Start(clustertest.Options{Binary: "bin/warren", Nodes: 3})
//	if err != nil { ... }
//	defer c.Close()
//	rec := clustertest.NewRecorder()
//	w := clustertest.StartWorkload(clustertest.WorkloadConfig{
//		Queues: []clustertest.QueueSpec{{Name: "q", Class: clustertest.QueueClass{Kind: "classic", MustNotLose: true}, Nodes: []int{1}}},
//		URL:    func(n int) string { return c.Node(n).URL() },
//		Rec:    rec,
//	})
//	in := &clustertest.Injector{C: c, Rec: rec}
//	in.Run(ctx, clustertest.Plan(seed, clustertest.PlanConfig{Nodes: 3, Kinds: []clustertest.FaultKind{clustertest.FaultKill}}))
//	w.StopPublishers()
//	w.Drain(5*time.Second, time.Minute)
//	w.Stop()
//	report := clustertest.Check(rec.Events(), clustertest.CheckConfig{Queues: ...})
//	if !report.OK() { ... report.Violations() ... }
package clustertest
