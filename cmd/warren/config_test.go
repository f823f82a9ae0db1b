package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/wal"
)

// cleanEnv removes every WARREN_ variable for the test (restored after it).
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, envPrefix+"_") {
			t.Setenv(k, v)
			os.Unsetenv(k)
		}
	}
}

// configFile writes a config file and returns its path.
func configFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "warren.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, args ...string) *config {
	t.Helper()
	c, err := loadConfig(args, io.Discard)
	if err != nil {
		t.Fatalf("loadConfig(%q): %v", args, err)
	}
	return c
}

func TestConfig_DefaultsAreBrokerDefaults(t *testing.T) {
	cleanEnv(t)
	c := load(t)
	want := broker.DefaultConfig()
	if !reflect.DeepEqual(c.Config, want) {
		t.Fatalf("broker config without flags:\n%+v\nbroker.DefaultConfig():\n%+v", c.Config, want)
	}
	if c.segmentSize != wal.DefaultSegmentSize {
		t.Fatalf("wal-segment-size default %d, wal.DefaultSegmentSize %d", c.segmentSize, wal.DefaultSegmentSize)
	}
	if c.httpListen != "127.0.0.1:15672" || c.prometheusListen != "127.0.0.1:15692" || c.logLevel != "info" {
		t.Fatalf("listeners/log: %q %q %q", c.httpListen, c.prometheusListen, c.logLevel)
	}
}

// TestConfig_FileNumbersAndUnits: JSON numbers of 1,000,000 and more (json.Unmarshal makes
// them float64, which fmt.Sprint printed as 5e+07) and sizes with RabbitMQ's units.
func TestConfig_FileNumbersAndUnits(t *testing.T) {
	cleanEnv(t)
	p := configFile(t, `{
		"disk-free-limit": 50000000,
		"memory-budget": "1GiB",
		"max-queue-memory": "50MB",
		"wal-segment-size": "2MiB",
		"max-message-size": 1000000,
		"frame-max": "128KiB",
		"channel-max": 100,
		"heartbeat": 30,
		"vm-memory-high-watermark": 0.5,
		"handshake-timeout": "3s",
		"max-connections": 2000000,
		"amqp-listen": "127.0.0.1:5999",
		"http-listen": "",
		"log-json": true,
		"vhost-key": ["a=/k/a", "b=/k/b"]
	}`)
	c := load(t, "--config", p)
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("disk-free-limit", c.DiskFreeLimit, int64(50_000_000))
	check("memory-budget", c.MemoryBudget, int64(1<<30))
	check("max-queue-memory", c.MaxQueueMemory, int64(50_000_000))
	check("wal-segment-size", c.segmentSize, 2<<20)
	check("max-message-size", c.MaxMessageSize, 1_000_000)
	check("frame-max", c.FrameMax, uint32(128<<10))
	check("channel-max", c.ChannelMax, uint16(100))
	check("heartbeat", c.Heartbeat, uint16(30))
	check("vm-memory-high-watermark", c.MemoryHighWatermark, 0.5)
	check("handshake-timeout", c.HandshakeTimeout, 3*time.Second)
	check("max-connections", c.MaxConnections, 2_000_000)
	check("amqp-listen", c.AMQPListen, "127.0.0.1:5999")
	check("http-listen", c.httpListen, "")
	check("log-json", c.logJSON, true)
	check("vhost-key", []string(c.enc.vhostKeys), []string{"a=/k/a", "b=/k/b"})
}

func TestConfig_Env(t *testing.T) {
	cleanEnv(t)
	t.Setenv("WARREN_DISK_FREE_LIMIT", "1GB")
	t.Setenv("WARREN_MAX_QUEUE_MEMORY", "64MiB")
	t.Setenv("WARREN_HEARTBEAT", "0")
	t.Setenv("WARREN_DATA_DIR", "/tmp/envdata")
	t.Setenv("WARREN_HTTP_LISTEN", "") // empty: off
	c := load(t)
	if c.DiskFreeLimit != 1_000_000_000 || c.MaxQueueMemory != 64<<20 || c.DataDir != "/tmp/envdata" {
		t.Fatalf("from env: disk-free-limit %d, max-queue-memory %d, data-dir %q", c.DiskFreeLimit, c.MaxQueueMemory, c.DataDir)
	}
	if c.Heartbeat != 0 || !c.NoHeartbeat {
		t.Fatalf("WARREN_HEARTBEAT=0: heartbeat %d, NoHeartbeat %v", c.Heartbeat, c.NoHeartbeat)
	}
	if c.httpListen != "" {
		t.Fatalf("WARREN_HTTP_LISTEN= left http-listen %q", c.httpListen)
	}
}

// TestConfig_Precedence: flag > WARREN_ variable > config file > default, for each setting
// on its own; the config file may also come from WARREN_CONFIG.
func TestConfig_Precedence(t *testing.T) {
	cleanEnv(t)
	p := configFile(t, `{"disk-free-limit": "3MB", "max-queue-memory": "3MB", "memory-budget": "3MB", "data-dir": "/file", "http-listen": "127.0.0.1:3"}`)
	t.Setenv("WARREN_CONFIG", p)
	t.Setenv("WARREN_MAX_QUEUE_MEMORY", "2MB")
	t.Setenv("WARREN_MEMORY_BUDGET", "2MB")
	t.Setenv("WARREN_HTTP_LISTEN", "") // an empty variable still wins over the file
	c := load(t, "--memory-budget", "1MB")
	if c.MemoryBudget != 1e6 {
		t.Errorf("flag vs env vs file: memory-budget %d, want the flag's 1MB", c.MemoryBudget)
	}
	if c.MaxQueueMemory != 2e6 {
		t.Errorf("env vs file: max-queue-memory %d, want the variable's 2MB", c.MaxQueueMemory)
	}
	if c.DiskFreeLimit != 3e6 || c.DataDir != "/file" {
		t.Errorf("file vs default: disk-free-limit %d, data-dir %q; want the file's", c.DiskFreeLimit, c.DataDir)
	}
	if c.httpListen != "" {
		t.Errorf("empty env vs file: http-listen %q, want empty", c.httpListen)
	}
	if c.MaxMessageSize != broker.DefaultConfig().MaxMessageSize {
		t.Errorf("default: max-message-size %d", c.MaxMessageSize)
	}
	// A flag wins over an empty variable too.
	c = load(t, "--http-listen", "127.0.0.1:1")
	if c.httpListen != "127.0.0.1:1" {
		t.Errorf("flag vs empty env: http-listen %q", c.httpListen)
	}
	// --config wins over WARREN_CONFIG.
	p2 := configFile(t, `{"disk-free-limit": "4MB"}`)
	if c = load(t, "--config", p2); c.DiskFreeLimit != 4e6 {
		t.Errorf("--config vs WARREN_CONFIG: disk-free-limit %d, want 4MB", c.DiskFreeLimit)
	}
}

// TestConfig_InvalidValuesClearErrors: a bad value stops the start with an error naming the
// setting, the value and where it came from.
func TestConfig_InvalidValuesClearErrors(t *testing.T) {
	cleanEnv(t)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		file string
		want []string // all in the error
	}{
		{name: "unknown unit", args: []string{"--disk-free-limit", "50XB"}, want: []string{"disk-free-limit", `"50XB"`, `unknown unit "XB"`}},
		{name: "ambiguous unit", args: []string{"--memory-budget", "2G"}, want: []string{"memory-budget", `"2G"`, "ambiguous", "GiB", "GB"}},
		{name: "fraction", args: []string{"--max-queue-memory", "1.5GB"}, want: []string{"max-queue-memory", "whole number"}},
		{name: "negative budget", args: []string{"--memory-budget", "-1"}, want: []string{"memory-budget", "want 0 to"}},
		{name: "message size over RabbitMQ's bound", args: []string{"--max-message-size", "1GiB"}, want: []string{"max-message-size", "want 1 to 536870912"}},
		{name: "frame-max below AMQP's minimum", args: []string{"--frame-max", "1000"}, want: []string{"frame-max", "want 4096 to"}},
		{name: "channel-max too large", args: []string{"--channel-max", "70000"}, want: []string{"channel-max", `"70000"`, "0 to 65535"}},
		{name: "channel-max zero", args: []string{"--channel-max", "0"}, want: []string{"channel-max 0"}},
		{name: "heartbeat too large", args: []string{"--heartbeat", "65536"}, want: []string{"heartbeat", "0 to 65535"}},
		{name: "log level", args: []string{"--log-level", "loud"}, want: []string{"log-level", `"loud"`}},
		{name: "cert login", args: []string{"--ssl-cert-login-from", "email"}, want: []string{"ssl-cert-login-from", `"email"`}},
		{name: "two bad settings", args: []string{"--log-level", "loud", "--ssl-cert-login-from", "email"}, want: []string{"log-level", "ssl-cert-login-from"}},
		{name: "env", env: map[string]string{"WARREN_DISK_FREE_LIMIT": "lots"}, want: []string{"WARREN_DISK_FREE_LIMIT", "disk-free-limit", `"lots"`}},
		{name: "file value", file: `{"frame-max": "2k"}`, want: []string{"config file", "warren.json", "frame-max", "ambiguous"}},
		{name: "file unknown key", file: `{"disk_free_limit": "50MB"}`, want: []string{"config file", "warren.json", `"disk_free_limit"`, "not defined"}},
		{name: "file syntax", file: `{"disk-free-limit": 50MB}`, want: []string{"config file", "warren.json", "invalid character"}},
		{name: "file missing", args: []string{"--config", "/nonexistent/warren.json"}, want: []string{"/nonexistent/warren.json", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", configFile(t, tc.file)}, args...)
			}
			_, err := loadConfig(args, io.Discard)
			if err == nil {
				t.Fatalf("loadConfig(%q) accepted it", args)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"50000000", 50_000_000}, {"-1", -1}, {" 42 ", 42},
		{"1kB", 1000}, {"1KB", 1000}, {"1kb", 1000}, {"50MB", 50_000_000}, {"50mb", 50_000_000}, {"1GB", 1_000_000_000}, {"2TB", 2e12},
		{"1KiB", 1024}, {"1kiB", 1024}, {"1KIB", 1024}, {"1Ki", 1024}, {"1MiB", 1 << 20}, {"1mib", 1 << 20}, {"1GiB", 1 << 30}, {"4Gi", 4 << 30}, {"1TiB", 1 << 40},
		{"50 MB", 50_000_000}, {"-1GB", -1e9},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "MB", "5e7", "1.5GB", "1k", "1M", "1g", "10XB", "1 B", "99999999999TB", "99999999999999999999"} {
		if n, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, n)
		}
	}
}
