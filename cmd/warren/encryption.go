package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/crypt"
	"github.com/warrenmq/warren/wal"
)

// The crypt Cipher is the wal's.
var _ wal.Cipher = (*crypt.Cipher)(nil)

// encryptionFlags are the encryption-at-rest flags: --encryption-key-file FILE[,FILE...] (the
// node's keys) and --vhost-key VHOST=FILE[,FILE...] (a vhost's own keys, repeatable). In each
// list the first key seals and every key opens, which is how keys are rotated.
type encryptionFlags struct {
	nodeKeys       string
	vhostKeys      vhostKeyFlag
	allowPlaintext bool
}

// vhostKeyFlag collects the repeatable --vhost-key.
type vhostKeyFlag []string

func (v *vhostKeyFlag) String() string { return strings.Join(*v, " ") }

func (v *vhostKeyFlag) Set(s string) error {
	if vh, files, ok := strings.Cut(s, "="); !ok || vh == "" || files == "" {
		return fmt.Errorf("want VHOST=FILE[,FILE...], got %q", s)
	}
	*v = append(*v, s)
	return nil
}

func registerEncryptionFlags(fs *flag.FlagSet) *encryptionFlags {
	f := &encryptionFlags{}
	fs.StringVar(&f.nodeKeys, "encryption-key-file", "", "encrypt message bodies and properties at rest with this key file (32 random bytes, raw or hex; "+
		"outside --data-dir); FILE,OLDFILE,...: the first encrypts, all decrypt (rotation)")
	fs.Var(&f.vhostKeys, "vhost-key", "VHOST=FILE[,OLDFILE...]: the vhost's own keys instead of --encryption-key-file (repeatable)")
	fs.BoolVar(&f.allowPlaintext, "encryption-allow-plaintext", false, "with keys, also read messages stored before encryption was turned on "+
		"(otherwise their queues stay out of service: unencrypted records are not authenticated)")
	return f
}

// load reads the key files, refusing any inside dataDir, and returns the node's encryption.
// Without keys it still returns one: its plaintext ciphers refuse records that are sealed, so
// that a node started without its keys says so instead of misreading them.
func (f *encryptionFlags) load(dataDir string, log zerolog.Logger) (*encryption, error) {
	e := &encryption{vhosts: map[string]*crypt.Keyring{}, vhostOf: map[string]string{}}
	var err error
	if e.node, err = loadKeyring("--encryption-key-file", f.nodeKeys, dataDir, log); err != nil {
		return nil, err
	}
	if f.allowPlaintext {
		e.node = e.node.AllowingPlaintext()
	}
	for _, s := range f.vhostKeys {
		vh, files, _ := strings.Cut(s, "=")
		if _, dup := e.vhosts[vh]; dup {
			return nil, fmt.Errorf("--vhost-key: vhost '%s' given twice (list its keys in one flag: %s=NEW,OLD)", vh, vh)
		}
		if e.vhosts[vh], err = loadKeyring("--vhost-key "+vh, files, dataDir, log); err != nil {
			return nil, err
		}
		if f.allowPlaintext {
			e.vhosts[vh] = e.vhosts[vh].AllowingPlaintext()
		}
	}
	if e.node.Encrypts() {
		log.Info().Str("scope", "node").Strs("key_ids", e.node.IDs()).Msg("encryption at rest on")
	}
	for vh, r := range e.vhosts {
		log.Info().Str("scope", "vhost").Str("vhost", vh).Strs("key_ids", r.IDs()).Msg("encryption at rest on")
	}
	return e, nil
}

// loadKeyring reads a comma-separated list of key files.
func loadKeyring(flagName, files, dataDir string, log zerolog.Logger) (*crypt.Keyring, error) {
	var keys []crypt.Key
	if files != "" {
		for _, path := range strings.Split(files, ",") {
			if path == "" {
				return nil, fmt.Errorf("%s: empty file name in %q", flagName, files)
			}
			if in, err := within(dataDir, path); err != nil {
				return nil, fmt.Errorf("%s: %w", flagName, err)
			} else if in {
				return nil, fmt.Errorf("%s: key file %s is inside the data folder %s: keep keys apart from the data they protect "+
					"(a stolen disk or backup would hold both)", flagName, path, dataDir)
			}
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				log.Warn().Str("file", path).Str("mode", fi.Mode().Perm().String()).Msg("key file readable by other users")
			}
			k, err := crypt.LoadKeyFile(path)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", flagName, err)
			}
			keys = append(keys, k)
		}
	}
	r, err := crypt.NewKeyring(keys...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName, err)
	}
	return r, nil
}

// within reports whether path is dir or lies below it, after resolving symbolic links.
func within(dir, path string) (bool, error) {
	d, err := realPath(dir)
	if err != nil {
		return false, err
	}
	p, err := realPath(path)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(d, p)
	if err != nil {
		return false, nil // different volumes
	}
	return rel == "." || filepath.IsLocal(rel), nil
}

// realPath returns p absolute with symbolic links resolved; the part of it that does not exist
// yet is kept as it is.
func realPath(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, os.ErrNotExist) || parent == p {
			return "", err
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// encryption hands out the ciphers of the queue and spill logs. A log's name is a hash, so the
// storage adapter tells it (bind) which vhost a log belongs to before it opens the log.
type encryption struct {
	node   *crypt.Keyring            // keys of vhosts without their own (may be empty: plaintext)
	vhosts map[string]*crypt.Keyring // --vhost-key

	mu      sync.Mutex
	vhostOf map[string]string // log name → vhost
}

// bind records that the log called name holds messages of vhost vh.
func (e *encryption) bind(name, vh string) {
	e.mu.Lock()
	e.vhostOf[name] = vh
	e.mu.Unlock()
}

// cipherFor returns the wal.Config.CipherFor of the logs in one folder; domain ("wal", "spill")
// goes into each record's binding with the log name, so that records of a queue's log and of
// its spill cannot stand in for each other. The definitions log stays plaintext: it holds names,
// bindings and arguments, no messages.
func (e *encryption) cipherFor(domain string) func(name string) wal.Cipher {
	return func(name string) wal.Cipher {
		if name == defsLog {
			return nil
		}
		e.mu.Lock()
		vh, ok := e.vhostOf[name]
		e.mu.Unlock()
		ring, label := e.node, "log "+name
		if ok {
			label = fmt.Sprintf("vhost '%s'", vh)
			if r := e.vhosts[vh]; r != nil {
				ring = r
			}
		}
		return ring.Cipher(label, domain+"/"+name)
	}
}

// explain adds what to do to an error from a queue log whose records the configured keys cannot
// open.
func (e *encryption) explain(err error) error {
	switch {
	case errors.Is(err, crypt.ErrUnknownKey):
		return fmt.Errorf("%w; start the node with that key (--vhost-key VHOST=NEW,OLD or --encryption-key-file NEW,OLD); nothing on disk was changed", err)
	case errors.Is(err, crypt.ErrNotSealed):
		return fmt.Errorf("%w; if the queue holds messages from before encryption was turned on, start once with --encryption-allow-plaintext "+
			"and drain them; otherwise the record was forged or damaged; nothing on disk was changed", err)
	case errors.Is(err, crypt.ErrAuth), errors.Is(err, crypt.ErrFormat):
		return fmt.Errorf("%w; the record was tampered with or damaged: restore the queue's log from a backup; nothing on disk was changed", err)
	}
	return err
}

// encrypts reports whether messages of vhost vh are encrypted at rest.
func (e *encryption) encrypts(vh string) bool {
	if e == nil {
		return false
	}
	if r := e.vhosts[vh]; r != nil {
		return r.Encrypts()
	}
	return e.node != nil && e.node.Encrypts()
}
