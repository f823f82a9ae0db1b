package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// loadDataID returns the id of the node's data folder, made the first time the folder is
// used. The cluster compares it with the id a queue's placement recorded for its leader: a
// leader whose folder changed (wiped, replaced) holds none of the log it was made leader of,
// and must not lead it (its followers would cut their logs to its empty one).
func loadDataID(dir string) (string, error) {
	p := filepath.Join(dir, "data-id")
	if b, err := os.ReadFile(p); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("cluster: data id: %w", err)
	}
	b := make([]byte, 12)
	rand.Read(b)
	id := hex.EncodeToString(b)
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", fmt.Errorf("cluster: data id: %w", err)
	}
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return "", fmt.Errorf("cluster: data id: %w", err)
	}
	return id, nil
}
