package broker

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"net"
	"slices"
	"sync"
)

// Users is the user database. Passwords are stored as RabbitMQ's default hash: a 4-byte salt
// followed by SHA-256(salt + password), so definitions exported from RabbitMQ keep working.
type Users struct {
	mu       sync.RWMutex
	users    map[string]*User
	loopback map[string]bool // RabbitMQ's loopback_users: names that may connect only from loopback
}

// User is one user.
type User struct {
	Name         string
	PasswordHash []byte // salt(4) + hash(salt+password); empty: no password (only EXTERNAL logins)
	// HashingAlgorithm names the hash as RabbitMQ does: rabbit_password_hashing_sha256 (the
	// default when empty), rabbit_password_hashing_sha512 or rabbit_password_hashing_md5.
	HashingAlgorithm string
	Tags             []string // administrator, monitoring, management, policymaker, impersonator
	LoopbackOnly     bool     // as RabbitMQ's loopback_users (guest by default)
	Limits           UserLimits
}

// UserLimits are RabbitMQ's per-user limits; a negative value means no limit.
type UserLimits struct {
	MaxConnections int // connections of this user across the node (0: none allowed)
	MaxChannels    int // channels per connection of this user
}

// NoUserLimits is UserLimits without any limit.
var NoUserLimits = UserLimits{MaxConnections: -1, MaxChannels: -1}

// RabbitMQ's names for the password hashing modules.
const (
	HashSHA256 = "rabbit_password_hashing_sha256"
	HashSHA512 = "rabbit_password_hashing_sha512"
	HashMD5    = "rabbit_password_hashing_md5"
)

// Errors of the user and permission store.
var (
	ErrNoUser       = errors.New("broker: no such user")
	ErrNoVHost      = errors.New("broker: no such vhost")
	ErrBadHash      = errors.New("broker: bad password hash")
	ErrBadRegexp    = errors.New("broker: invalid regular expression")
	ErrBadAlgorithm = errors.New("broker: unsupported password hashing algorithm")
	// ErrUnknownComponent: a runtime parameter of a component Warren does not have (only
	// vhost-limits has an effect here).
	ErrUnknownComponent = errors.New("broker: unknown runtime parameter component")
)

// NewUsers returns an empty database.
func NewUsers() *Users {
	return &Users{users: make(map[string]*User), loopback: map[string]bool{"guest": true}}
}

// HashPassword returns RabbitMQ's rabbit_password_hashing_sha256 form of password.
func HashPassword(password string) []byte {
	salt := make([]byte, 4)
	rand.Read(salt)
	return hashWithSalt(salt, password)
}

func hashWithSalt(salt []byte, password string) []byte {
	h := sha256.Sum256(append(append([]byte{}, salt...), password...))
	return append(append([]byte{}, salt...), h[:]...)
}

// newHash returns the hash function of a RabbitMQ hashing module name ("" is SHA-256).
func newHash(algorithm string) (func() hash.Hash, error) {
	switch algorithm {
	case "", HashSHA256:
		return sha256.New, nil
	case HashSHA512:
		return sha512.New, nil
	case HashMD5:
		return md5.New, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrBadAlgorithm, algorithm)
}

// checkPassword reports whether password matches a salt(4)+hash(salt+password) value.
func checkPassword(algorithm string, stored []byte, password string) bool {
	newH, err := newHash(algorithm)
	if err != nil {
		return false
	}
	h := newH()
	if len(stored) != 4+h.Size() {
		return false
	}
	h.Write(stored[:4])
	h.Write([]byte(password))
	return subtle.ConstantTimeCompare(h.Sum(nil), stored[4:]) == 1
}

// Add creates or replaces a user.
func (u *Users) Add(name, password string, tags []string, loopbackOnly bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users[name] = &User{Name: name, PasswordHash: HashPassword(password), HashingAlgorithm: HashSHA256, Tags: tags, LoopbackOnly: loopbackOnly, Limits: NoUserLimits}
}

// Authenticate checks a user's password and the loopback restriction.
func (u *Users) Authenticate(name, password string, remote net.Addr) (bool, string) {
	u.mu.RLock()
	usr := u.users[name]
	u.mu.RUnlock()
	if usr == nil {
		return false, "user '" + name + "' does not exist"
	}
	if len(usr.PasswordHash) == 0 {
		return false, "user '" + name + "' has no password"
	}
	if !checkPassword(usr.HashingAlgorithm, usr.PasswordHash, password) {
		return false, "invalid credentials"
	}
	if (usr.LoopbackOnly || u.isLoopbackUser(name)) && !isLoopback(remote) {
		return false, "user '" + name + "' can only connect via localhost"
	}
	return true, ""
}

func isLoopback(a net.Addr) bool {
	if a == nil {
		return false
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (u *Users) isLoopbackUser(name string) bool {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.loopback[name]
}

// SetLoopbackUsers replaces RabbitMQ's loopback_users list (default: guest): these users may
// connect only from a loopback address, whatever mechanism they use.
func (u *Users) SetLoopbackUsers(names []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.loopback = make(map[string]bool, len(names))
	for _, n := range names {
		u.loopback[n] = true
	}
}

// AuthenticateExternal checks a user named by a TLS client certificate (SASL EXTERNAL): the
// user must exist, and the loopback restriction applies; no password is checked.
func (u *Users) AuthenticateExternal(name string, remote net.Addr) (bool, string) {
	u.mu.RLock()
	usr := u.users[name]
	u.mu.RUnlock()
	if usr == nil {
		return false, "user '" + name + "' does not exist"
	}
	if (usr.LoopbackOnly || u.isLoopbackUser(name)) && !isLoopback(remote) {
		return false, "user '" + name + "' can only connect via localhost"
	}
	return true, ""
}

// Put creates or replaces a user from a stored hash (definitions import). The hash must have
// the algorithm's length (4-byte salt + digest) or be empty (no password).
func (u *Users) Put(usr User) error {
	if len(usr.PasswordHash) > 0 {
		newH, err := newHash(usr.HashingAlgorithm)
		if err != nil {
			return err
		}
		if len(usr.PasswordHash) != 4+newH().Size() {
			return fmt.Errorf("%w: %d bytes for %s", ErrBadHash, len(usr.PasswordHash), usr.HashingAlgorithm)
		}
	}
	if usr.HashingAlgorithm == "" {
		usr.HashingAlgorithm = HashSHA256
	}
	usr.Tags = slices.Clone(usr.Tags)
	usr.PasswordHash = slices.Clone(usr.PasswordHash)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users[usr.Name] = &usr
	return nil
}

// Lookup returns a copy of the named user.
func (u *Users) Lookup(name string) (User, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	usr := u.users[name]
	if usr == nil {
		return User{}, false
	}
	return usr.clone(), true
}

// List returns copies of every user, sorted by name.
func (u *Users) List() []User {
	u.mu.RLock()
	out := make([]User, 0, len(u.users))
	for _, usr := range u.users {
		out = append(out, usr.clone())
	}
	u.mu.RUnlock()
	slices.SortFunc(out, func(a, b User) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Delete removes a user and reports whether it existed.
func (u *Users) Delete(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.users[name]
	delete(u.users, name)
	return ok
}

// update applies f to the named user under the lock.
func (u *Users) update(name string, f func(*User)) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	usr := u.users[name]
	if usr == nil {
		return fmt.Errorf("%w: '%s'", ErrNoUser, name)
	}
	f(usr)
	return nil
}

func (usr *User) clone() User {
	c := *usr
	c.Tags = slices.Clone(usr.Tags)
	c.PasswordHash = slices.Clone(usr.PasswordHash)
	return c
}
