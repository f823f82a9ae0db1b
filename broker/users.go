package broker

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"sync"
)

// Users is the user database. Passwords are stored as RabbitMQ's default hash: a 4-byte salt
// followed by SHA-256(salt + password), so definitions exported from RabbitMQ keep working.
type Users struct {
	mu    sync.RWMutex
	users map[string]*User
}

// User is one user.
type User struct {
	Name         string
	PasswordHash []byte // salt(4) + sha256(salt+password)
	Tags         []string
	LoopbackOnly bool // as RabbitMQ's loopback_users (guest by default)
}

// NewUsers returns an empty database.
func NewUsers() *Users { return &Users{users: make(map[string]*User)} }

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

// Add creates or replaces a user.
func (u *Users) Add(name, password string, tags []string, loopbackOnly bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users[name] = &User{Name: name, PasswordHash: HashPassword(password), Tags: tags, LoopbackOnly: loopbackOnly}
}

// Authenticate checks a user's password and the loopback restriction.
func (u *Users) Authenticate(name, password string, remote net.Addr) (bool, string) {
	u.mu.RLock()
	usr := u.users[name]
	u.mu.RUnlock()
	if usr == nil {
		return false, "user '" + name + "' does not exist"
	}
	if len(usr.PasswordHash) != 4+sha256.Size {
		return false, "user '" + name + "' has no password"
	}
	want := hashWithSalt(usr.PasswordHash[:4], password)
	if subtle.ConstantTimeCompare(want, usr.PasswordHash) != 1 {
		return false, "invalid credentials"
	}
	if usr.LoopbackOnly && !isLoopback(remote) {
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
