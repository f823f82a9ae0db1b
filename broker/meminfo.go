package broker

import (
	"bufio"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// physicalMemory returns the memory this process may use, in bytes: the machine's memory from
// /proc/meminfo, or the memory limit of the process's cgroup (a container's) when that is
// lower (1 GiB if neither is known). The relative memory watermark and the default memory
// budget are fractions of it.
func physicalMemory() int64 {
	total := machineMemory()
	if lim, ok := cgroupMemoryLimit("/sys/fs/cgroup", "/proc/self/cgroup"); ok && lim < total {
		return lim
	}
	return total
}

// machineMemory is MemTotal of /proc/meminfo (1 GiB if unknown).
func machineMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 1 << 30
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				return kb << 10
			}
		}
	}
	return 1 << 30
}

// cgroupMemoryLimit reads the memory limit of the cgroup listed in procCgroup (the format of
// /proc/self/cgroup) under the cgroup file system mounted at root: cgroup v2's memory.max
// ("0::/path"), else v1's memory.limit_in_bytes (the "memory" controller's line). The lowest
// limit of the cgroup and its ancestors counts (a container's own cgroup often has none, its
// parent has). No limit ("max", or v1's near-2^63 value) or nothing readable: false.
func cgroupMemoryLimit(root, procCgroup string) (int64, bool) {
	data, err := os.ReadFile(procCgroup)
	if err != nil {
		return 0, false
	}
	var v1, v2 string
	haveV2 := false
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, haveV2 = parts[2], true
		case containsField(parts[1], "memory"):
			v1 = parts[2]
		}
	}
	if haveV2 {
		if lim, ok := lowestLimit(filepath.Join(root), v2, "memory.max"); ok {
			return lim, true
		}
		if lim, ok := lowestLimit(filepath.Join(root, "unified"), v2, "memory.max"); ok {
			return lim, true
		}
	}
	if v1 != "" {
		return lowestLimit(filepath.Join(root, "memory"), v1, "memory.limit_in_bytes")
	}
	return 0, false
}

// lowestLimit is the lowest limit in file along cgroup path p and its ancestors under dir.
func lowestLimit(dir, p, file string) (int64, bool) {
	best, found := int64(0), false
	for p = path.Clean("/" + p); ; p = path.Dir(p) {
		if data, err := os.ReadFile(filepath.Join(dir, p, file)); err == nil {
			s := strings.TrimSpace(string(data))
			// v1 writes "no limit" as the largest page-aligned int64.
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < 1<<62 && (!found || n < best) {
				best, found = n, true
			}
		}
		if p == "/" {
			return best, found
		}
	}
}

func containsField(list, name string) bool {
	for _, f := range strings.Split(list, ",") {
		if f == name {
			return true
		}
	}
	return false
}
