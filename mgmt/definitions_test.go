package mgmt_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// GET /api/definitions carries the policies (and, for one vhost, that vhost's, without their
// vhost field); a RabbitMQ 3.x policy with ha-* keys and a look-ahead pattern imports, keeps
// its keys and applies what Warren has (issue 11, item 12).
func TestAPI_DefinitionsCarryPolicies(t *testing.T) {
	e := start(t)
	e.must(http.StatusCreated, "PUT", "/api/vhosts/other", nil)
	e.must(http.StatusNoContent, "POST", "/api/definitions", `{"policies":[
	  {"vhost":"/","name":"mirrored","pattern":"^(?!amq\\.).*","apply-to":"queues","priority":1,
	   "definition":{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic","max-length":1}},
	  {"vhost":"other","name":"elsewhere","pattern":"^x","apply-to":"all","priority":0,"definition":{"message-ttl":1000}}]}`)

	var d struct {
		Policies []map[string]any `json:"policies"`
	}
	if err := json.Unmarshal(e.must(http.StatusOK, "GET", "/api/definitions", nil), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Policies) != 2 || d.Policies[0]["name"] != "mirrored" || d.Policies[0]["vhost"] != "/" || d.Policies[0]["pattern"] != "^(?!amq\\.).*" {
		t.Fatalf("exported policies %v", d.Policies)
	}
	def, _ := d.Policies[0]["definition"].(map[string]any)
	if def["ha-mode"] != "exactly" || def["ha-params"] != 2.0 || def["max-length"] != 1.0 {
		t.Fatalf("exported definition %v", def)
	}
	var one struct {
		Policies []map[string]any `json:"policies"`
	}
	if err := json.Unmarshal(e.must(http.StatusOK, "GET", "/api/definitions/%2F", nil), &one); err != nil {
		t.Fatal(err)
	}
	if len(one.Policies) != 1 || one.Policies[0]["name"] != "mirrored" || one.Policies[0]["vhost"] != nil {
		t.Fatalf("policies of vhost /: %v", one.Policies)
	}

	// The look-ahead pattern matches as in RabbitMQ: this queue gets max-length 1.
	_, ch := e.dial()
	if _, err := ch.QueueDeclare("lookahead", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if q := e.getObj("/api/queues/%2F/lookahead"); q["policy"] != "mirrored" {
			return "queue without its policy"
		}
		return ""
	})
	// A pattern no engine takes is refused.
	code, body := e.do("PUT", "/api/policies/%2F/bad", map[string]any{"pattern": "(?<", "definition": map[string]any{"max-length": 1}})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "pattern") {
		t.Fatalf("bad pattern: %d %s", code, body)
	}
}

// A policy set through /api/policies is in GET /api/definitions (it used to export "policies": []).
func TestAPI_DefinitionsExportPolicies(t *testing.T) {
	e := start(t)
	e.must(http.StatusCreated, "PUT", "/api/policies/%2F/ttl", map[string]any{"pattern": "^t", "definition": map[string]any{"message-ttl": 5}})
	var d struct {
		Policies []map[string]any `json:"policies"`
	}
	if err := json.Unmarshal(e.must(http.StatusOK, "GET", "/api/definitions", nil), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Policies) != 1 || d.Policies[0]["name"] != "ttl" || d.Policies[0]["apply-to"] != "all" {
		t.Fatalf("exported policies %v", d.Policies)
	}
}
