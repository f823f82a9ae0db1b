package broker

import (
	"os"
	"path/filepath"
	"testing"
)

// The memory limit of a container's cgroup, v2 or v1, own or inherited, caps the memory the
// relative watermark and the default budget are fractions of.
func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cgroup string            // /proc/self/cgroup
		files  map[string]string // under the cgroup root
		want   int64
		ok     bool
	}{
		{"v2 own limit", "0::/docker/abc\n", map[string]string{"docker/abc/memory.max": "536870912\n"}, 512 << 20, true},
		{"v2 no limit", "0::/docker/abc\n", map[string]string{"docker/abc/memory.max": "max\n"}, 0, false},
		{"v2 parent's limit", "0::/kubepods/pod1/c1\n", map[string]string{"kubepods/pod1/c1/memory.max": "max\n", "kubepods/pod1/memory.max": "1073741824\n"}, 1 << 30, true},
		{"v2 lowest of the chain", "0::/a/b\n", map[string]string{"a/b/memory.max": "3000000000", "a/memory.max": "2000000000"}, 2000000000, true},
		{"v1 memory controller", "12:pids:/x\n4:memory:/process_api/1234\n0::/\n", map[string]string{"memory/process_api/1234/memory.limit_in_bytes": "268435456\n"}, 256 << 20, true},
		{"v1 unlimited", "4:cpu,memory:/p\n", map[string]string{"memory/p/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false},
		{"v2 in hybrid mode (unified)", "4:memory:/\n0::/svc\n", map[string]string{"unified/svc/memory.max": "100000000"}, 100000000, true},
		{"no cgroup files", "0::/nowhere\n", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			root := filepath.Join(dir, "sys")
			for name, content := range tc.files {
				p := filepath.Join(root, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			pc := filepath.Join(dir, "cgroup")
			os.WriteFile(pc, []byte(tc.cgroup), 0o644)
			got, ok := cgroupMemoryLimit(root, pc)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("got %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
