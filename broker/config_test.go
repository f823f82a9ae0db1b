package broker

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfig_SetDefaultsIsDefaultConfig(t *testing.T) {
	var c Config
	c.SetDefaults()
	if d := DefaultConfig(); !reflect.DeepEqual(c, d) {
		t.Fatalf("zero Config after SetDefaults:\n%+v\nDefaultConfig:\n%+v", c, d)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig does not validate: %v", err)
	}
	// Set fields are kept; NoHeartbeat keeps heartbeat 0.
	c = Config{FrameMax: 8192, NoHeartbeat: true, DiskFreeLimit: -1}
	c.SetDefaults()
	if c.FrameMax != 8192 || c.Heartbeat != 0 || c.DiskFreeLimit != -1 || c.ChannelMax != DefaultConfig().ChannelMax {
		t.Fatalf("SetDefaults changed set fields: %+v", c)
	}
}

func TestConfig_ValidateNamesEachBadSetting(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{FrameMax: 1000}, "frame-max 1000: below 4096"},
		{Config{MaxMessageSize: 600 << 20}, "max-message-size 629145600"},
		{Config{MaxMessageSize: -1}, "max-message-size -1"},
		{Config{MemoryBudget: -5}, "memory-budget -5: negative"},
		{Config{MaxQueueMemory: -5}, "max-queue-memory -5: negative"},
		{Config{HandshakeTimeout: -time.Second}, "handshake-timeout -1s: negative"},
		{Config{MaxConnections: -1}, "max-connections -1: negative"},
		{Config{CertLoginFrom: "email"}, `ssl-cert-login-from "email"`},
		{Config{QueueMasterLocator: "balanced"}, `queue-master-locator "balanced"`},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Validate() = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%+v: New accepted it", tc.cfg)
		}
	}
	// Every bad setting is reported, not only the first.
	err := (&Config{FrameMax: 1, MemoryBudget: -1}).Validate()
	if err == nil || !strings.Contains(err.Error(), "frame-max") || !strings.Contains(err.Error(), "memory-budget") {
		t.Fatalf("two bad settings: %v", err)
	}
	// Negative alarm settings turn the alarms off: valid.
	if err := (&Config{MemoryHighWatermark: -1, DiskFreeLimit: -1}).Validate(); err != nil {
		t.Fatal(err)
	}
}
