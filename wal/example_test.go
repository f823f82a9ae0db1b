package wal_test

import (
	"fmt"
	"os"

	"github.com/warrenmq/warren/wal"
)

func Example() {
	dir, _ := os.MkdirTemp("", "wal-example")
	defer os.RemoveAll(dir)

	m, err := wal.Open(wal.Config{Dir: dir}) // zero Logger: silent
	if err != nil {
		panic(err)
	}
	l, err := m.Log("orders")
	if err != nil {
		panic(err)
	}
	confirmed := make(chan uint64, 3)
	for _, body := range []string{"a", "b", "c"} {
		l.Append([]byte(body), func(off uint64, err error) { // after the group commit's fsync
			if err == nil {
				confirmed <- off
			}
		})
	}
	for range 3 {
		<-confirmed
	}
	l.MarkDelivered(2)
	l.Retire(1) // acked
	m.Close()

	// After a restart: the live records, in order, with their delivery hints.
	m, _ = wal.Open(wal.Config{Dir: dir})
	defer m.Close()
	l, _ = m.Log("orders")
	_ = l.Replay(func(e wal.Entry) error {
		fmt.Printf("%d %s redelivered=%v\n", e.Offset, e.Payload, e.Delivered)
		return nil
	})
	// Output:
	// 2 b redelivered=true
	// 3 c redelivered=false
}
