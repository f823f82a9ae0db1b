package mgmt_test

import (
	"encoding/json"
	"testing"
)

func TestAPI_UserWithoutManagementTagIsForbidden(t *testing.T) {
	e := start(t)
	e.must(201, "PUT", "/api/users/app", map[string]any{"password": "s3cret", "tags": ""})
	if code, _ := e.doAs("app", "s3cret", "GET", "/api/overview", nil); code != 403 {
		t.Fatalf("user without tags: %d, want 403", code)
	}
	if code, _ := e.doAs("app", "wrong", "GET", "/api/overview", nil); code != 401 {
		t.Fatalf("bad password: %d, want 401", code)
	}
	e.must(204, "PUT", "/api/users/app", map[string]any{"password": "s3cret", "tags": "monitoring"})
	if code, _ := e.doAs("app", "s3cret", "GET", "/api/overview", nil); code != 200 {
		t.Fatalf("monitoring user: %d, want 200", code)
	}
	if code, _ := e.doAs("app", "s3cret", "GET", "/api/users", nil); code != 403 {
		t.Fatalf("monitoring user listing users: %d, want 403", code)
	}
}

func TestAPI_UsersVHostsPermissions(t *testing.T) {
	e := start(t)
	e.must(201, "PUT", "/api/vhosts/staging", nil)
	e.must(204, "PUT", "/api/vhosts/staging", nil)
	e.must(201, "PUT", "/api/users/ops", map[string]any{"password": "pw", "tags": []string{"administrator"}})
	e.must(201, "PUT", "/api/permissions/staging/ops", map[string]any{"configure": "^ops\\.", "write": ".*", "read": ".*"})
	p := e.getObj("/api/permissions/staging/ops")
	if p["configure"] != "^ops\\." || p["user"] != "ops" || p["vhost"] != "staging" {
		t.Fatalf("permission: %v", p)
	}
	if l := e.getList("/api/users/ops/permissions"); len(l) != 1 {
		t.Fatalf("user permissions: %v", l)
	}
	// The creating user (guest) got full permissions on the new vhost.
	if l := e.getList("/api/vhosts/staging/permissions"); len(l) != 2 {
		t.Fatalf("vhost permissions: %v", l)
	}
	u := e.getObj("/api/users/ops")
	if tags, _ := u["tags"].([]any); len(tags) != 1 || tags[0] != "administrator" || u["hashing_algorithm"] != "rabbit_password_hashing_sha256" {
		t.Fatalf("user: %v", u)
	}
	// The exported hash logs in after import elsewhere.
	defs := e.must(200, "GET", "/api/definitions", nil)
	dst := start(t)
	dst.must(204, "POST", "/api/definitions", string(defs))
	if code, _ := dst.doAs("ops", "pw", "GET", "/api/whoami", nil); code != 200 {
		t.Fatalf("imported user cannot log in: %d", code)
	}
	var vhs []map[string]any
	json.Unmarshal(dst.must(200, "GET", "/api/vhosts", nil), &vhs)
	if len(vhs) != 2 {
		t.Fatalf("imported vhosts: %v", vhs)
	}
	e.must(204, "DELETE", "/api/permissions/staging/ops", nil)
	e.must(404, "GET", "/api/permissions/staging/ops", nil)
	e.must(204, "DELETE", "/api/users/ops", nil)
	e.must(404, "DELETE", "/api/users/ops", nil)
	e.must(204, "DELETE", "/api/vhosts/staging", nil)
	e.must(404, "GET", "/api/vhosts/staging", nil)
}
