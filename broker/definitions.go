package broker

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/vhost"
)

// Definitions is RabbitMQ's definitions format (rabbitmqctl export_definitions, GET
// /api/definitions): users, vhosts, permissions, topic permissions, runtime parameters (vhost
// limits), policies, queues, exchanges and bindings.
type Definitions struct {
	RabbitVersion    string               `json:"rabbit_version,omitempty"`
	Users            []DefUser            `json:"users"`
	VHosts           []DefVHost           `json:"vhosts"`
	Permissions      []DefPermission      `json:"permissions"`
	TopicPermissions []DefTopicPerm       `json:"topic_permissions"`
	Parameters       []DefParameter       `json:"parameters"`
	GlobalParameters []DefGlobalParameter `json:"global_parameters"`
	Policies         []DefPolicy          `json:"policies"`
	Queues           []DefQueue           `json:"queues"`
	Exchanges        []DefExchange        `json:"exchanges"`
	Bindings         []DefBinding         `json:"bindings"`
}

// DefPolicy is a policy in definitions.
type DefPolicy struct {
	VHost      string         `json:"vhost,omitempty"`
	Name       string         `json:"name"`
	Pattern    string         `json:"pattern"`
	ApplyTo    string         `json:"apply-to"`
	Priority   int            `json:"priority"`
	Definition map[string]any `json:"definition"`
}

// DefQueue is a queue in definitions.
type DefQueue struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost,omitempty"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Arguments  map[string]any `json:"arguments"`
}

// DefExchange is an exchange in definitions.
type DefExchange struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost,omitempty"`
	Type       string         `json:"type"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Internal   bool           `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
}

// DefBinding is a binding in definitions.
type DefBinding struct {
	Source          string         `json:"source"`
	VHost           string         `json:"vhost,omitempty"`
	Destination     string         `json:"destination"`
	DestinationType string         `json:"destination_type"`
	RoutingKey      string         `json:"routing_key"`
	Arguments       map[string]any `json:"arguments"`
}

// DefGlobalParameter is a global runtime parameter (RabbitMQ's cluster_name,
// internal_cluster_id): read and ignored.
type DefGlobalParameter struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
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

// DefParameter is a runtime parameter; only component "vhost-limits" has an effect here.
type DefParameter struct {
	VHost     string         `json:"vhost,omitempty"`
	Component string         `json:"component"`
	Name      string         `json:"name"`
	Value     map[string]any `json:"value"`
}

// ReadDefinitions decodes a definitions JSON document. Numbers keep their integer type.
func ReadDefinitions(r io.Reader) (*Definitions, error) {
	var d Definitions
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
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

// LoadDefinitions imports everything in d, as RabbitMQ's import (and its load_definitions at
// boot): users, vhosts, permissions, topic permissions, vhost limits, policies, queues,
// exchanges and bindings, adding to and replacing what exists; nothing is deleted. A hash
// exported from RabbitMQ authenticates here. What is already so is not written again, so an
// import at every start adds nothing to the metadata log. Every entry is tried; the error
// joins the failures.
func (s *Server) LoadDefinitions(d *Definitions) error {
	return s.ImportDefinitions(d, "")
}

// ImportDefinitions is LoadDefinitions; with into set (RabbitMQ's POST
// /api/definitions/{vhost}), only the vhost-scoped entries (parameters, policies, queues,
// exchanges, bindings) are imported, all into that vhost.
func (s *Server) ImportDefinitions(d *Definitions, into string) error {
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	vh := func(name string) string {
		if into != "" {
			return into
		}
		return name
	}
	if into == "" {
		for _, u := range d.Users {
			fail(s.importUser(u))
		}
		for _, v := range d.VHosts {
			fail(s.AddVHost(v.Name))
		}
		for _, p := range d.Permissions {
			if err := s.SetPermissions(Permission{User: p.User, VHost: p.VHost, Configure: p.Configure, Write: p.Write, Read: p.Read}); err != nil {
				fail(fmt.Errorf("permission of '%s' in '%s': %w", p.User, p.VHost, err))
			}
		}
		for _, p := range d.TopicPermissions {
			if err := s.SetTopicPermissions(TopicPermission{User: p.User, VHost: p.VHost, Exchange: p.Exchange, Write: p.Write, Read: p.Read}); err != nil {
				fail(fmt.Errorf("topic permission of '%s' in '%s': %w", p.User, p.VHost, err))
			}
		}
	}
	for _, p := range d.Parameters {
		if p.Component != componentVHostLimits {
			s.log.Warn().Str("vhost", vh(p.VHost)).Str("component", p.Component).Str("name", p.Name).
				Msg("runtime parameter of a component warren does not have: not imported")
			continue
		}
		l := NoVHostLimits
		if v, ok := limitValue(p.Value["max-connections"]); ok {
			l.MaxConnections = v
		}
		if v, ok := limitValue(p.Value["max-queues"]); ok {
			l.MaxQueues = v
		}
		fail(s.SetVHostLimits(vh(p.VHost), l))
	}
	for _, p := range d.Policies {
		v := s.VHost(vh(p.VHost))
		if v == nil {
			fail(fmt.Errorf("policy '%s': %w: '%s'", p.Name, ErrNoVHost, vh(p.VHost)))
			continue
		}
		def, _ := jsonTable(p.Definition)
		fail(v.SetPolicy(vhost.Policy{Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo, Priority: p.Priority, Definition: def}))
	}
	for _, q := range d.Queues {
		v := s.VHost(vh(q.VHost))
		if v == nil {
			fail(fmt.Errorf("queue '%s': %w: '%s'", q.Name, ErrNoVHost, vh(q.VHost)))
			continue
		}
		args, _ := jsonTable(q.Arguments)
		_, _, err := v.DeclareQueue(vhost.QueueDecl{Name: q.Name, Durable: q.Durable, AutoDelete: q.AutoDelete, Args: args})
		fail(err)
	}
	for _, x := range d.Exchanges {
		v := s.VHost(vh(x.VHost))
		if v == nil {
			fail(fmt.Errorf("exchange '%s': %w: '%s'", x.Name, ErrNoVHost, vh(x.VHost)))
			continue
		}
		args, _ := jsonTable(x.Arguments)
		if x.Name == "" || strings.HasPrefix(x.Name, "amq.") {
			continue // the predeclared ones (an export has none)
		}
		_, err := v.DeclareExchange(vhost.ExchangeDecl{Name: x.Name, Type: x.Type, Durable: x.Durable, AutoDelete: x.AutoDelete, Internal: x.Internal, Args: args})
		fail(err)
	}
	for _, b := range d.Bindings {
		v := s.VHost(vh(b.VHost))
		if v == nil {
			fail(fmt.Errorf("binding from '%s': %w: '%s'", b.Source, ErrNoVHost, vh(b.VHost)))
			continue
		}
		args, _ := jsonTable(b.Arguments)
		if b.DestinationType == "exchange" {
			fail(v.BindExchange(b.Destination, b.Source, b.RoutingKey, args))
			continue
		}
		var owner any
		if q := v.Queue(b.Destination); q != nil {
			owner = q.Owner
		}
		fail(v.BindQueue(b.Destination, b.Source, b.RoutingKey, args, owner))
	}
	return errors.Join(errs...)
}

// importUser puts one user of a definitions file.
func (s *Server) importUser(u DefUser) error {
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
		if old, ok := s.users.Lookup(u.Name); ok && checkPassword(old.HashingAlgorithm, old.PasswordHash, u.Password) {
			usr.PasswordHash, usr.HashingAlgorithm = old.PasswordHash, old.HashingAlgorithm // the same password: no change
		}
	}
	if v, ok := u.Limits["max-connections"]; ok {
		usr.Limits.MaxConnections = v
	}
	if v, ok := u.Limits["max-channels"]; ok {
		usr.Limits.MaxChannels = v
	}
	if err := s.PutUser(usr); err != nil {
		return fmt.Errorf("user '%s': %w", u.Name, err)
	}
	return nil
}

// ExportDefinitions returns the node's definitions in RabbitMQ's format, sorted: everything
// an import recreates. Exclusive queues, the predeclared exchanges and the default
// exchange's implicit bindings are left out, as RabbitMQ does.
func (s *Server) ExportDefinitions() *Definitions {
	d := &Definitions{RabbitVersion: CompatVersion, Users: []DefUser{}, VHosts: []DefVHost{}, Permissions: []DefPermission{},
		TopicPermissions: []DefTopicPerm{}, Parameters: []DefParameter{}, GlobalParameters: []DefGlobalParameter{},
		Policies: []DefPolicy{}, Queues: []DefQueue{}, Exchanges: []DefExchange{}, Bindings: []DefBinding{}}
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
	for name, l := range s.sec.vhostLimits {
		val := map[string]any{}
		if l.MaxConnections >= 0 {
			val["max-connections"] = l.MaxConnections
		}
		if l.MaxQueues >= 0 {
			val["max-queues"] = l.MaxQueues
		}
		d.Parameters = append(d.Parameters, DefParameter{VHost: name, Component: componentVHostLimits, Name: "limits", Value: val})
	}
	s.mu.Unlock()
	ps, ts := s.acl.list()
	for _, p := range ps {
		d.Permissions = append(d.Permissions, DefPermission{User: p.User, VHost: p.VHost, Configure: p.Configure, Write: p.Write, Read: p.Read})
	}
	for _, p := range ts {
		d.TopicPermissions = append(d.TopicPermissions, DefTopicPerm{User: p.User, VHost: p.VHost, Exchange: p.Exchange, Write: p.Write, Read: p.Read})
	}
	for _, v := range s.VHosts() {
		d.VHosts = append(d.VHosts, DefVHost{Name: v.Name})
		s.exportVHost(d, v)
	}
	slices.SortFunc(d.VHosts, func(a, b DefVHost) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(d.Parameters, func(a, b DefParameter) int { return cmp.Compare(a.VHost, b.VHost) })
	slices.SortFunc(d.Policies, func(a, b DefPolicy) int { return cmp.Or(cmp.Compare(a.VHost, b.VHost), cmp.Compare(a.Name, b.Name)) })
	slices.SortFunc(d.Queues, func(a, b DefQueue) int { return cmp.Or(cmp.Compare(a.VHost, b.VHost), cmp.Compare(a.Name, b.Name)) })
	slices.SortFunc(d.Exchanges, func(a, b DefExchange) int { return cmp.Or(cmp.Compare(a.VHost, b.VHost), cmp.Compare(a.Name, b.Name)) })
	slices.SortFunc(d.Bindings, func(a, b DefBinding) int {
		return cmp.Or(cmp.Compare(a.VHost, b.VHost), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Destination, b.Destination),
			cmp.Compare(a.DestinationType, b.DestinationType), cmp.Compare(a.RoutingKey, b.RoutingKey))
	})
	return d
}

// exportVHost adds a vhost's policies, queues, exchanges and bindings to d.
func (s *Server) exportVHost(d *Definitions, v *vhost.VHost) {
	for _, p := range v.Policies() {
		d.Policies = append(d.Policies, DefPolicy{VHost: v.Name, Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo, Priority: p.Priority,
			Definition: tableJSON(p.Definition)})
	}
	for _, q := range v.Queues() {
		if q.Exclusive {
			continue
		}
		d.Queues = append(d.Queues, DefQueue{Name: q.Name, VHost: v.Name, Durable: q.Durable, AutoDelete: q.AutoDelete, Arguments: tableJSON(q.Args)})
	}
	for _, x := range v.Exchanges() {
		if x.Name == "" || strings.HasPrefix(x.Name, "amq.") {
			continue
		}
		d.Exchanges = append(d.Exchanges, DefExchange{Name: x.Name, VHost: v.Name, Type: x.Type, Durable: x.Durable, AutoDelete: x.AutoDelete,
			Internal: x.Internal, Arguments: tableJSON(x.Args)})
	}
	for _, b := range v.Bindings() {
		if b.Source == "" {
			continue
		}
		if q := v.Queue(b.Destination); !b.DestIsExchange && q != nil && q.Exclusive {
			continue
		}
		dt := "queue"
		if b.DestIsExchange {
			dt = "exchange"
		}
		d.Bindings = append(d.Bindings, DefBinding{Source: b.Source, VHost: v.Name, Destination: b.Destination, DestinationType: dt,
			RoutingKey: b.Key, Arguments: tableJSON(b.Args)})
	}
}

// jsonTable converts a JSON object (decoded with UseNumber, or plain) to an AMQP field table:
// whole numbers become long ('l'), as RabbitMQ stores them, other numbers double.
func jsonTable(m map[string]any) (amqp.Table, error) {
	if len(m) == 0 {
		return nil, nil
	}
	t := make(amqp.Table, len(m))
	for k, v := range m {
		t[k] = jsonField(v)
	}
	return t, nil
}

func jsonField(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
		return x
	case map[string]any:
		t, _ := jsonTable(x)
		if t == nil {
			t = amqp.Table{}
		}
		return t
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonField(e)
		}
		return out
	}
	return v
}

// tableJSON converts an AMQP table to JSON values ({} for nil).
func tableJSON(t amqp.Table) map[string]any {
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = fieldJSON(v)
	}
	return out
}

func fieldJSON(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		return tableJSON(x)
	case map[string]any:
		return tableJSON(amqp.Table(x))
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fieldJSON(e)
		}
		return out
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.Unix()
	case amqp.Decimal:
		return float64(x.Value) / math.Pow10(int(x.Scale))
	case float32:
		return float64(x)
	}
	return v
}

// limitValue reads a limit from decoded JSON (json.Number or float64) or from
// ExportDefinitions (int).
func limitValue(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	case float64:
		return int(n), true
	case int:
		return n, true
	case int64:
		return int(n), true
	}
	return 0, false
}

// securityFile is where versions before the metadata store kept users, vhosts, permissions
// and limits (definitions format). At start it is imported into the store once, then renamed
// to securityFile + ".imported".
const securityFile = "security.json"

// readSecurityFile reads an older version's security file: nil when there is none. An empty
// file (an older version's write cut short by a power loss) is reported as such.
func (s *Server) readSecurityFile() (d *Definitions, empty bool, err error) {
	path := filepath.Join(s.cfg.DataDir, securityFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, true, nil
	}
	d, err = ReadDefinitions(bytes.NewReader(data))
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return d, false, nil
}

// retireSecurityFile renames an imported security file aside (and syncs the folder).
func (s *Server) retireSecurityFile() error {
	path := filepath.Join(s.cfg.DataDir, securityFile)
	if err := os.Rename(path, path+".imported"); err != nil {
		return err
	}
	dir, err := os.Open(s.cfg.DataDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}
