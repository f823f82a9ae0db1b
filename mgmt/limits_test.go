package mgmt_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"
)

func (h healthTarget) call(t *testing.T, method, path string, body any) (int, any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, h.base+path, rd)
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var v any
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s %s: %d %q", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, v
}

// Vhost limits, user limits and topic permissions over HTTP answer as RabbitMQ's (run with
// MGMT_RABBITMQ_URL to check against RabbitMQ; the test's vhost and user are its own).
func TestAPI_LimitsAndTopicPermissions(t *testing.T) {
	for name, h := range healthTargets(t) {
		t.Run(name, func(t *testing.T) {
			const vh, user = "warren-limits-test", "warren-limits-user"
			h.call(t, "DELETE", "/api/vhosts/"+vh, nil)
			h.call(t, "DELETE", "/api/users/"+user, nil)
			t.Cleanup(func() {
				h.call(t, "DELETE", "/api/vhosts/"+vh, nil)
				h.call(t, "DELETE", "/api/users/"+user, nil)
			})
			steps := []struct {
				method, path string
				body         any
				code         int
				want         any // nil: not compared
			}{
				{"PUT", "/api/vhosts/" + vh, map[string]any{}, 201, nil},
				{"PUT", "/api/users/" + user, map[string]any{"password": "p", "tags": ""}, 201, nil},
				{"GET", "/api/vhost-limits/" + vh, nil, 200, []any{}},
				{"PUT", "/api/vhost-limits/" + vh + "/max-connections", map[string]any{"value": 10}, 204, nil},
				{"PUT", "/api/vhost-limits/" + vh + "/max-queues", map[string]any{"value": 5}, 204, nil},
				{"GET", "/api/vhost-limits/" + vh, nil, 200, []any{map[string]any{"vhost": vh, "value": map[string]any{"max-connections": 10.0, "max-queues": 5.0}}}},
				{"PUT", "/api/vhost-limits/" + vh + "/bogus", map[string]any{"value": 5}, 400, nil},
				{"PUT", "/api/vhost-limits/" + vh + "/max-queues", map[string]any{"value": "x"}, 400, nil},
				{"PUT", "/api/vhost-limits/no-such-vhost-here/max-queues", map[string]any{"value": 1}, 404, map[string]any{"error": "not_found", "reason": "vhost_not_found"}},
				{"GET", "/api/vhost-limits/no-such-vhost-here", nil, 404, nil},
				{"DELETE", "/api/vhost-limits/" + vh + "/max-queues", nil, 204, nil},
				{"GET", "/api/vhost-limits/" + vh, nil, 200, []any{map[string]any{"vhost": vh, "value": map[string]any{"max-connections": 10.0}}}},
				{"DELETE", "/api/vhost-limits/" + vh + "/max-queues", nil, 204, nil},

				{"PUT", "/api/user-limits/" + user + "/max-channels", map[string]any{"value": 10}, 204, nil},
				{"GET", "/api/user-limits/" + user, nil, 200, []any{map[string]any{"user": user, "value": map[string]any{"max-channels": 10.0}}}},
				{"PUT", "/api/user-limits/" + user + "/bogus", map[string]any{"value": 1}, 400, nil},
				{"PUT", "/api/user-limits/no-such-user-here/max-channels", map[string]any{"value": 1}, 400, nil},
				{"DELETE", "/api/user-limits/" + user + "/max-channels", nil, 204, nil},
				{"GET", "/api/user-limits/" + user, nil, 200, []any{}},
				{"GET", "/api/user-limits/no-such-user-here", nil, 404, nil},

				{"PUT", "/api/topic-permissions/" + vh + "/" + user, map[string]any{"exchange": "amq.topic", "write": "^a", "read": ".*"}, 201, nil},
				{"PUT", "/api/topic-permissions/" + vh + "/" + user, map[string]any{"write": "^a", "read": ".*"}, 400, map[string]any{"error": "bad_request", "reason": "[{key_missing,exchange}]"}},
				{"GET", "/api/topic-permissions/" + vh + "/" + user, nil, 200, []any{map[string]any{"user": user, "vhost": vh, "exchange": "amq.topic", "write": "^a", "read": ".*"}}},
				{"GET", "/api/users/" + user + "/topic-permissions", nil, 200, []any{map[string]any{"user": user, "vhost": vh, "exchange": "amq.topic", "write": "^a", "read": ".*"}}},
				{"GET", "/api/vhosts/" + vh + "/topic-permissions", nil, 200, []any{map[string]any{"user": user, "vhost": vh, "exchange": "amq.topic", "write": "^a", "read": ".*"}}},
				{"DELETE", "/api/topic-permissions/" + vh + "/" + user, nil, 204, nil},
				{"GET", "/api/topic-permissions/" + vh + "/" + user, nil, 404, nil},
			}
			for _, s := range steps {
				code, got := h.call(t, s.method, s.path, s.body)
				if code != s.code || s.want != nil && !reflect.DeepEqual(got, s.want) {
					t.Errorf("%s %s: %d %v, want %d %v", s.method, s.path, code, got, s.code, s.want)
				}
			}
		})
	}
}
