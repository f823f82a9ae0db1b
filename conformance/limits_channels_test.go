package conformance

import (
	"fmt"
	"testing"
)

// TestLimits_UserMaxChannels: a user's max-channels counts channels across the user's
// connections; one more channel.open closes the connection with 530 NOT_ALLOWED (RabbitMQ's
// text), and the slot is free again once that channel is gone.
func TestLimits_UserMaxChannels(t *testing.T) {
	tn := &tenancy{}
	u, v := secName(t, "onechan"), "/"+secName(t, "chv")
	tn.user(u, "pw", map[string]int{"max-channels": 1})
	tn.vhost(v, nil)
	tn.perm(u, v, ".*", ".*", ".*")
	b := setupTenancy(t, tn)
	c := dialURL(t, b.url(u, "pw", v))
	if _, err := c.Channel(); err != nil {
		t.Fatalf("first channel: %v", err)
	}
	_, err := c.Channel()
	wantErrText(t, err, 530, fmt.Sprintf("NOT_ALLOWED - number of channels opened for user '%s' has reached the maximum allowed user limit of (1)", u))
	// The connection (and its channel) is gone: a new connection may open one.
	c2 := dialURL(t, b.url(u, "pw", v))
	waitFor(t, func() bool {
		ch, err := c2.Channel()
		if err != nil {
			c2 = dialURL(t, b.url(u, "pw", v))
			return false
		}
		ch.Close()
		return true
	})
}
