package broker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/vhost"
)

// Definitions is the security part of RabbitMQ's definitions format (rabbitmqctl
// export_definitions, GET /api/definitions): users, vhosts, permissions, topic permissions
// and vhost limits (parameters of component "vhost-limits"). Other keys (queues, exchanges,
// bindings, policies) are ignored here.
type Definitions struct {
	RabbitVersion    string          `json:"rabbit_version,omitempty"`
	Users            []DefUser       `json:"users"`
	VHosts           []DefVHost      `json:"vhosts"`
	Permissions      []DefPermission `json:"permissions"`
	TopicPermissions []DefTopicPerm  `json:"topic_permissions"`
	Parameters       []DefParameter  `json:"parameters"`
	Policies         []DefPolicy     `json:"policies"`
}

// DefPolicy is a policy in definitions.
type DefPolicy struct {
	VHost      string         `json:"vhost"`
	Name       string         `json:"name"`
	Pattern    string         `json:"pattern"`
	ApplyTo    string         `json:"apply-to"`
	Priority   int            `json:"priority"`
	Definition map[string]any `json:"definition"`
}

// DefUser is a user in definitions. PasswordHash is base64(salt + digest). Password, a Warren
// extension for hand-written files, is hashed on import when PasswordHash is empty.
type DefUser struct {
	Name             string         `json:"name"`
	PasswordHash     string         `json:"password_hash"`
	Password         string         `json:"password,omitempty"`
	HashingAlgorithm string         `json:"hashing_algorithm"`
	Tags             DefTags        `json:"tags"`
	Limits           map[string]int `json:"limits"`
}

// DefTags reads RabbitMQ's tags as either a list (3.9+) or a comma-separated string (older
// exports) and writes a list.
type DefTags []string

// UnmarshalJSON accepts ["a","b"] or "a,b".
func (t *DefTags) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = nil
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				*t = append(*t, p)
			}
		}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*t = l
	return nil
}

// DefVHost is a vhost in definitions.
type DefVHost struct {
	Name string `json:"name"`
}

// DefPermission is a permission in definitions.
type DefPermission struct {
	User      string `json:"user"`
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// DefTopicPerm is a topic permission in definitions.
type DefTopicPerm struct {
	User     string `json:"user"`
	VHost    string `json:"vhost"`
	Exchange string `json:"exchange"`
	Write    string `json:"write"`
	Read     string `json:"read"`
}

// DefParameter is a runtime parameter; only component "vhost-limits" is used.
type DefParameter struct {
	VHost     string         `json:"vhost"`
	Component string         `json:"component"`
	Name      string         `json:"name"`
	Value     map[string]any `json:"value"`
}

// ReadDefinitions decodes a definitions JSON document.
func ReadDefinitions(r io.Reader) (*Definitions, error) {
	var d Definitions
	if err := json.NewDecoder(r).Decode(&d); err != nil {
		return nil, fmt.Errorf("broker: definitions: %w", err)
	}
	return &d, nil
}

// LoadDefinitionsFile imports a definitions JSON file (LoadDefinitions).
func (s *Server) LoadDefinitionsFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := ReadDefinitions(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return s.LoadDefinitions(d)
}

// LoadDefinitions imports users, vhosts, permissions, topic permissions and vhost limits,
// adding to and replacing what exists (as RabbitMQ's import): nothing is deleted. A hash
// exported from RabbitMQ authenticates here. It stops at the first invalid entry.
func (s *Server) LoadDefinitions(d *Definitions) error {
	for _, u := range d.Users {
		usr := User{Name: u.Name, HashingAlgorithm: u.HashingAlgorithm, Tags: u.Tags, Limits: NoUserLimits}
		switch {
		case u.PasswordHash != "":
			h, err := base64.StdEncoding.DecodeString(u.PasswordHash)
			if err != nil {
				return fmt.Errorf("user '%s': %w: %v", u.Name, ErrBadHash, err)
			}
			usr.PasswordHash = h
		case u.Password != "":
			usr.PasswordHash, usr.HashingAlgorithm = HashPassword(u.Password), HashSHA256
		}
		if v, ok := u.Limits["max-connections"]; ok {
			usr.Limits.MaxConnections = v
		}
		if v, ok := u.Limits["max-channels"]; ok {
			usr.Limits.MaxChannels = v
		}
		if err := s.users.Put(usr); err != nil {
			return fmt.Errorf("user '%s': %w", u.Name, err)
		}
	}
	for _, v := range d.VHosts {
		if err := s.AddVHost(v.Name); err != nil {
			return err
		}
	}
	for _, p := range d.Permissions {
		if err := s.SetPermissions(Permission{User: p.User, VHost: p.VHost, Configure: p.Configure, Write: p.Write, Read: p.Read}); err != nil {
			return fmt.Errorf("permission of '%s' in '%s': %w", p.User, p.VHost, err)
		}
	}
	for _, p := range d.TopicPermissions {
		if err := s.SetTopicPermissions(TopicPermission{User: p.User, VHost: p.VHost, Exchange: p.Exchange, Write: p.Write, Read: p.Read}); err != nil {
			return fmt.Errorf("topic permission of '%s' in '%s': %w", p.User, p.VHost, err)
		}
	}
	for _, p := range d.Parameters {
		if p.Component != "vhost-limits" {
			continue
		}
		l := NoVHostLimits
		if v, ok := limitValue(p.Value["max-connections"]); ok {
			l.MaxConnections = v
		}
		if v, ok := limitValue(p.Value["max-queues"]); ok {
			l.MaxQueues = v
		}
		if err := s.SetVHostLimits(p.VHost, l); err != nil {
			return err
		}
	}
	for _, p := range d.Policies {
		v := s.VHost(p.VHost)
		if v == nil {
			return fmt.Errorf("policy '%s': %w: %s", p.Name, ErrNoVHost, p.VHost)
		}
		def := amqp.Table{}
		for k, val := range p.Definition {
			def[k] = val
		}
		if err := v.SetPolicy(vhost.Policy{Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo, Priority: p.Priority, Definition: def}); err != nil {
			return err
		}
	}
	s.saveSecurity()
	return nil
}

// ExportDefinitions returns the security definitions in RabbitMQ's format.
func (s *Server) ExportDefinitions() *Definitions {
	d := &Definitions{RabbitVersion: "3.10.8", Users: []DefUser{}, VHosts: []DefVHost{}, Permissions: []DefPermission{},
		TopicPermissions: []DefTopicPerm{}, Parameters: []DefParameter{}, Policies: []DefPolicy{}}
	for _, v := range s.VHosts() {
		for _, p := range v.Policies() {
			d.Policies = append(d.Policies, DefPolicy{VHost: v.Name, Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo, Priority: p.Priority, Definition: p.Definition})
		}
	}
	for _, u := range s.users.List() {
		du := DefUser{Name: u.Name, PasswordHash: base64.StdEncoding.EncodeToString(u.PasswordHash),
			HashingAlgorithm: u.HashingAlgorithm, Tags: DefTags(u.Tags), Limits: map[string]int{}}
		if du.Tags == nil {
			du.Tags = DefTags{}
		}
		if u.Limits.MaxConnections >= 0 {
			du.Limits["max-connections"] = u.Limits.MaxConnections
		}
		if u.Limits.MaxChannels >= 0 {
			du.Limits["max-channels"] = u.Limits.MaxChannels
		}
		d.Users = append(d.Users, du)
	}
	s.mu.Lock()
	for name := range s.vhosts {
		d.VHosts = append(d.VHosts, DefVHost{Name: name})
	}
	for name, l := range s.sec.vhostLimits {
		val := map[string]any{}
		if l.MaxConnections >= 0 {
			val["max-connections"] = l.MaxConnections
		}
		if l.MaxQueues >= 0 {
			val["max-queues"] = l.MaxQueues
		}
		d.Parameters = append(d.Parameters, DefParameter{VHost: name, Component: "vhost-limits", Name: "limits", Value: val})
	}
	s.mu.Unlock()
	ps, ts := s.acl.list()
	for _, p := range ps {
		d.Permissions = append(d.Permissions, DefPermission{User: p.User, VHost: p.VHost, Configure: p.Configure, Write: p.Write, Read: p.Read})
	}
	for _, p := range ts {
		d.TopicPermissions = append(d.TopicPermissions, DefTopicPerm{User: p.User, VHost: p.VHost, Exchange: p.Exchange, Write: p.Write, Read: p.Read})
	}
	return d
}

// securityFile is where a node with storage keeps its users, vhosts and permissions between
// restarts (definitions format, rewritten whole on each change: they change rarely).
const securityFile = "security.json"

// saveState serialises writes of the security file.
type saveState struct {
	mu      sync.Mutex
	loading bool // suppress saves while the file itself is being loaded
}

// saveSecurity writes the security definitions to the data folder when the node persists
// (Config.Storage set). A failure is logged: the change is live, only its durability degrades.
func (s *Server) saveSecurity() {
	if s.cfg.Storage == nil {
		return
	}
	s.save.mu.Lock()
	defer s.save.mu.Unlock()
	if s.save.loading {
		return
	}
	data, err := json.MarshalIndent(s.ExportDefinitions(), "", "  ")
	if err == nil {
		path := filepath.Join(s.cfg.DataDir, securityFile)
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, data, 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("saving users and permissions failed")
	}
}

// loadSecurity restores the state saveSecurity wrote, replacing the default user, when the
// file exists.
func (s *Server) loadSecurity() error {
	if s.cfg.Storage == nil {
		return nil
	}
	path := filepath.Join(s.cfg.DataDir, securityFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := ReadDefinitions(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	s.save.mu.Lock()
	s.save.loading = true
	s.save.mu.Unlock()
	defer func() {
		s.save.mu.Lock()
		s.save.loading = false
		s.save.mu.Unlock()
	}()
	for _, u := range s.users.List() {
		s.users.Delete(u.Name)
	}
	s.acl.drop("", "")
	return s.LoadDefinitions(d)
}

// limitValue reads a limit from decoded JSON (float64) or from ExportDefinitions (int).
func limitValue(v any) (int, bool) {
	switch n := v.(type) {
	case float64:
		return int(n), true
	case int:
		return n, true
	}
	return 0, false
}
