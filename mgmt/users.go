package mgmt

import (
	"encoding/base64"
	"net/http"
)

func (s *Server) users(w http.ResponseWriter, r *http.Request) {
	items := []obj{}
	for _, u := range s.b.UserList() {
		items = append(items, obj{"name": u.Name, "password_hash": base64.StdEncoding.EncodeToString(u.PasswordHash),
			"hashing_algorithm": "rabbit_password_hashing_sha256", "tags": u.Tags, "limits": obj{}})
	}
	writeList(w, r, items)
}
