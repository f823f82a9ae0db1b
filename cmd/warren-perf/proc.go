package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is
// 100 on every mainstream Linux architecture (it is fixed by the kernel ABI,
// independent of CONFIG_HZ).
const clockTicks = 100

// parseStatCPU returns utime+stime from the contents of /proc/PID/stat.
// The command name (field 2) is parenthesised and may contain spaces or
// parentheses, so fields are counted from the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat: no ')'")
	}
	f := strings.Fields(stat[i+1:])
	// After ')' come field 3 (state) onwards; utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat: %d fields after comm", len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// parseStatusRSS returns VmRSS in KiB from the contents of /proc/PID/status.
func parseStatusRSS(status string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		f := strings.Fields(line[len("VmRSS:"):])
		if len(f) < 1 {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		if len(f) > 1 && !strings.EqualFold(f[1], "kB") {
			return 0, fmt.Errorf("VmRSS: unexpected unit %q", f[1])
		}
		return kb, nil
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// procCPU reads the CPU time (user+system) consumed so far by pid ("self"
// for this process).
func procCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// procRSS reads the resident set size of pid in KiB.
func procRSS(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	return parseStatusRSS(string(b))
}

// cpuSample is a (wall clock, CPU time) pair for one process.
type cpuSample struct {
	wall time.Time
	cpu  time.Duration
	ok   bool
}

func sampleCPU(pid string) cpuSample {
	c, err := procCPU(pid)
	return cpuSample{wall: time.Now(), cpu: c, ok: err == nil}
}

// cpuUsage returns CPU seconds used between two samples and the average
// number of cores that represents.
func cpuUsage(a, b cpuSample) (seconds, cores float64, ok bool) {
	if !a.ok || !b.ok {
		return 0, 0, false
	}
	wall := b.wall.Sub(a.wall).Seconds()
	seconds = (b.cpu - a.cpu).Seconds()
	if wall > 0 {
		cores = seconds / wall
	}
	return seconds, cores, true
}

// parseHostBusy returns the machine-wide busy CPU time (all CPUs: user, nice,
// system, irq, softirq, steal) from the contents of /proc/stat.
func parseHostBusy(stat string) (time.Duration, error) {
	sc := bufio.NewScanner(strings.NewReader(stat))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] != "cpu" {
			continue
		}
		var busy uint64
		for i, name := range []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"} {
			if i >= len(f)-1 {
				break
			}
			v, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/stat %s: %w", name, err)
			}
			if name != "idle" && name != "iowait" {
				busy += v
			}
		}
		return time.Duration(busy) * time.Second / clockTicks, nil
	}
	return 0, fmt.Errorf("no cpu line in /proc/stat")
}

// sampleHost samples the machine-wide busy CPU time.
func sampleHost() cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{wall: time.Now()}
	}
	c, err := parseHostBusy(string(b))
	return cpuSample{wall: time.Now(), cpu: c, ok: err == nil}
}
