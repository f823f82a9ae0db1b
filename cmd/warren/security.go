package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	"github.com/warrenmq/warren/broker"
)

// securityFlags are the TLS, definitions and connection-limit flags. Those that are broker
// settings are bound to the broker.Config given to registerSecurityFlags.
type securityFlags struct {
	tlsCert     string
	tlsKey      string
	tlsCA       string
	verifyPeer  bool
	failNoCert  bool
	httpTLS     bool
	definitions string

	// tls is what the listeners use (built by prepare): it hands each handshake the
	// configuration in live, which reloadTLS replaces (SIGHUP) without touching connections
	// already made.
	tls  *tls.Config
	live atomic.Pointer[tls.Config]
}

func registerSecurityFlags(fs *flag.FlagSet, b *broker.Config) *securityFlags {
	f := &securityFlags{}
	fs.StringVar(&b.AMQPSListen, "amqps-listen", b.AMQPSListen, "AMQP over TLS listen address (used when --tls-cert and --tls-key are set)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) of the server, for amqps and --http-tls")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM CA bundle that client certificates are verified against")
	fs.BoolVar(&f.verifyPeer, "tls-verify-peer", false, "ask amqps clients for a certificate and verify it against --tls-ca (RabbitMQ's verify_peer)")
	fs.BoolVar(&f.failNoCert, "tls-fail-if-no-peer-cert", false, "with --tls-verify-peer, refuse clients without a certificate")
	fs.BoolVar(&f.httpTLS, "http-tls", false, "serve the management HTTP endpoint over TLS with --tls-cert/--tls-key")
	fs.StringVar(&b.CertLoginFrom, "ssl-cert-login-from", b.CertLoginFrom, "user name of SASL EXTERNAL logins: distinguished_name or common_name")
	fs.StringVar(&f.definitions, "definitions", "", "RabbitMQ definitions JSON to import at start (users, vhosts, permissions, topic_permissions, vhost limits, policies, queues, exchanges, bindings)")
	fs.IntVar(&b.MaxConnections, "max-connections", b.MaxConnections, "most client sockets on this node; at the limit new clients wait to be accepted (0: no limit)")
	fs.DurationVar(&b.HandshakeTimeout, "handshake-timeout", b.HandshakeTimeout, "time a client has from TCP connect to connection.open-ok (TLS handshake included)")
	fs.DurationVar(&b.SendTimeout, "send-timeout", b.SendTimeout, "close a connection whose client takes no bytes for this long (it stopped reading); its unacked messages are requeued (negative: never)")
	return f
}

// prepare validates the flags and loads the certificates.
func (f *securityFlags) prepare() error {
	if f.tlsCert == "" && f.tlsKey == "" {
		if f.httpTLS || f.tlsCA != "" || f.verifyPeer {
			return errors.New("--http-tls, --tls-ca and --tls-verify-peer need --tls-cert and --tls-key")
		}
		return nil
	}
	if f.tlsCert == "" || f.tlsKey == "" {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if f.verifyPeer && f.tlsCA == "" {
		return errors.New("--tls-verify-peer needs --tls-ca")
	}
	cfg, err := f.buildTLS()
	if err != nil {
		return err
	}
	f.live.Store(cfg)
	f.tls = &tls.Config{MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return f.live.Load(), nil }}
	return nil
}

// reloadTLS reads the certificate, key and CA files again (SIGHUP): new connections get
// them, open ones keep theirs. On an error the previous ones stay in use.
func (f *securityFlags) reloadTLS() error {
	if f.tls == nil {
		return nil
	}
	cfg, err := f.buildTLS()
	if err != nil {
		return err
	}
	f.live.Store(cfg)
	return nil
}

// buildTLS reads the files into a server configuration.
func (f *securityFlags) buildTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificates in %s", f.tlsCA)
		}
		cfg.ClientCAs = pool
	}
	if f.verifyPeer {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if f.failNoCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// apply sets the broker's TLS configuration (built by prepare).
func (f *securityFlags) apply(cfg *broker.Config) {
	cfg.TLS = f.tls
}

// load imports --definitions into the started server.
func (f *securityFlags) load(srv *broker.Server) error {
	if f.definitions == "" {
		return nil
	}
	return srv.LoadDefinitionsFile(f.definitions)
}

// wrapHTTP serves the management listener over TLS with --http-tls (same certificate; client
// certificates are not asked for).
func (f *securityFlags) wrapHTTP(ln net.Listener) net.Listener {
	if !f.httpTLS || f.tls == nil {
		return ln
	}
	return tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &f.live.Load().Certificates[0], nil }})
}

// amqpsAddr is the bound amqps address for --addr-file ("" without TLS).
func amqpsAddr(srv *broker.Server) string {
	if a := srv.TLSAddr(); a != nil {
		return a.String()
	}
	return ""
}
