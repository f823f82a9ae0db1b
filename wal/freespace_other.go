//go:build !unix

package wal

// freeSpace is not known here: a log after ENOSPC retries without looking.
func freeSpace(string) (int64, bool) { return 0, false }
