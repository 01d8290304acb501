package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ErrNotNode is returned when a certificate that is not a node's is
// presented where only nodes may connect (peer RPCs, Raft).
var ErrNotNode = errors.New("not a node certificate")

// Material is a process's TLS material loaded from a certificate directory:
// the CA pool and its own certificate (a node's or a user's). It reloads on
// Reload (SIGHUP) and, with Watch, when the files change, so certificates
// are rotated without a restart; a reload that fails keeps the material in
// use and reports the error. Every tls.Config it hands out reads the
// current material at each handshake.
type Material struct {
	dir      string
	certFile string
	keyFile  string

	mu    sync.RWMutex
	pool  *x509.CertPool
	ca    *x509.Certificate
	cert  *tls.Certificate
	stamp string // modification times and sizes of the files, to spot changes
}

// LoadNode loads dir's CA and node certificate.
func LoadNode(dir string) (*Material, error) {
	return load(dir, NodeCertFile, NodeKeyFile)
}

// LoadClient loads dir's CA and user's client certificate.
func LoadClient(dir, user string) (*Material, error) {
	if err := ValidUser(user); err != nil {
		return nil, err
	}
	return load(dir, ClientCertFile(user), ClientKeyFile(user))
}

func load(dir, certFile, keyFile string) (*Material, error) {
	m := &Material{dir: dir, certFile: certFile, keyFile: keyFile}
	if err := m.Reload(); err != nil {
		return nil, err
	}
	return m, nil
}

// Dir is the certificate directory the material was loaded from.
func (m *Material) Dir() string { return m.dir }

func (m *Material) paths() []string {
	return []string{filepath.Join(m.dir, CACertFile), filepath.Join(m.dir, m.certFile), filepath.Join(m.dir, m.keyFile)}
}

func (m *Material) fileStamp() string {
	var s string
	for _, p := range m.paths() {
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return s
}

// Reload reads the files again. On error the material in use is kept.
func (m *Material) Reload() error {
	stamp := m.fileStamp()
	caPEM, err := os.ReadFile(filepath.Join(m.dir, CACertFile))
	if err != nil {
		return fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s holds no PEM certificate", filepath.Join(m.dir, CACertFile))
	}
	ca, err := firstCert(caPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(m.dir, CACertFile), err)
	}
	pair, err := loadPair(filepath.Join(m.dir, m.certFile), filepath.Join(m.dir, m.keyFile))
	if err != nil {
		return err
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%s is not signed by %s: %w", filepath.Join(m.dir, m.certFile), filepath.Join(m.dir, CACertFile), err)
	}
	m.mu.Lock()
	m.pool, m.ca, m.cert, m.stamp = pool, ca, &pair, stamp
	m.mu.Unlock()
	return nil
}

// Watch reloads the material whenever its files change, checking every
// interval until ctx ends; log may be nil (slog.Default). Polling, not inotify: Kubernetes updates a
// mounted secret by swapping a symlink, which file watches miss.
func (m *Material) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.RLock()
		old := m.stamp
		m.mu.RUnlock()
		if m.fileStamp() == old {
			continue
		}
		if err := m.Reload(); err != nil {
			log.Error("certificate reload failed; keeping the certificates in use", "dir", m.dir, "err", err)
			continue
		}
		log.Info("certificates reloaded", "dir", m.dir, "expires", m.NotAfter())
	}
}

// NotAfter is when the process's own certificate expires.
func (m *Material) NotAfter() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cert.Leaf.NotAfter
}

// CANotAfter is when the CA certificate expires.
func (m *Material) CANotAfter() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.ca.NotAfter
}

// Identity is who the material's own certificate says this process is.
func (m *Material) Identity() Identity {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return IdentityOf(m.cert.Leaf)
}

func (m *Material) current() (*x509.CertPool, *tls.Certificate) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pool, m.cert
}

// ServerConfig is the configuration of a listener that only certificate
// holders may use (Raft): TLS 1.3, a client certificate required and
// verified against the current CA, the current certificate served.
func (m *Material) ServerConfig() *tls.Config {
	return m.serverConfig(tls.RequireAndVerifyClientCert)
}

// serverConfig serves the material as it is at each handshake, with the
// client certificate policy auth.
func (m *Material) serverConfig(auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool, cert := m.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   auth,
				ClientCAs:    pool,
				NextProtos:   []string{"h2"},
			}, nil
		},
	}
}

// ClientConfig is the configuration of a dialer: TLS 1.3, the current
// certificate presented, the server's certificate verified against the CA
// as it is now and against the dialed host (IP SANs included), and the
// server required to be a node. A tls.Config holds its CA pool, so a
// long-lived dialer should take ClientCredentials, which builds a fresh
// configuration for every handshake.
func (m *Material) ClientConfig() *tls.Config {
	pool, _ := m.current()
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			_, cert := m.current()
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !IdentityOf(cs.PeerCertificates[0]).Node {
				return fmt.Errorf("tls: server certificate: %w", ErrNotNode)
			}
			return nil
		},
	}
}

// ClientCredentials are gRPC transport credentials over ClientConfig that
// take the material as it is at each handshake, so that a reloaded CA or
// certificate applies to the next connection of a long-lived client.
func (m *Material) ClientCredentials() credentials.TransportCredentials {
	return freshCredentials{config: m.ClientConfig}
}

// PeerCredentials are ClientCredentials over PeerConfig, for nodes.
func (m *Material) PeerCredentials() credentials.TransportCredentials {
	return freshCredentials{config: m.PeerConfig}
}

type freshCredentials struct{ config func() *tls.Config }

func (f freshCredentials) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(f.config()).ClientHandshake(ctx, authority, conn)
}

func (f freshCredentials) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("security: client credentials cannot serve")
}

func (f freshCredentials) Info() credentials.ProtocolInfo {
	return credentials.NewTLS(f.config()).Info()
}

func (f freshCredentials) Clone() credentials.TransportCredentials { return f }

// OverrideServerName implements a deprecated method of the interface.
func (f freshCredentials) OverrideServerName(string) error { return nil }

// PeerConfig is the configuration of a node dialing another node (peer
// RPCs, Raft): like ClientConfig, but the server must hold a node
// certificate of the CA, and its address is not matched against the
// certificate's names. Nodes learn each other's addresses through gossip
// (pod IPs on Kubernetes), which no certificate can list in advance, and
// every node certificate of the CA is trusted alike; a client, which dials
// addresses a person gave it, keeps the name check of ClientConfig.
func (m *Material) PeerConfig() *tls.Config {
	cfg := m.ClientConfig()
	cfg.RootCAs = nil
	// The chain is checked in VerifyConnection, without a name.
	cfg.InsecureSkipVerify = true //nolint:gosec // verified below
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		pool, _ := m.current()
		return verifyPeer(cs, pool)
	}
	return cfg
}

func verifyPeer(cs tls.ConnectionState, pool *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("tls: server certificate: %w", err)
	}
	if !IdentityOf(cs.PeerCertificates[0]).Node {
		return fmt.Errorf("tls: server certificate: %w", ErrNotNode)
	}
	return nil
}

// ServerName is the name to verify a node's certificate against when
// dialing addr (host:port): its host.
func ServerName(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// Identity is who a verified certificate stands for.
type Identity struct {
	// Node is true for a node certificate (NodeOU).
	Node bool
	// User is a client certificate's user; empty for a node.
	User string
}

// String names the identity for logs and errors.
func (id Identity) String() string {
	if id.Node {
		return "node"
	}
	return "user " + id.User
}

// IdentityOf reads the identity of a certificate that has been verified
// against the CA. A certificate that is neither a node's nor a client's by
// its OU has no identity (zero value).
func IdentityOf(c *x509.Certificate) Identity {
	switch {
	case slices.Contains(c.Subject.OrganizationalUnit, NodeOU) && c.Subject.CommonName == NodeCommonName:
		return Identity{Node: true}
	case slices.Contains(c.Subject.OrganizationalUnit, ClientOU) && ValidUser(c.Subject.CommonName) == nil:
		return Identity{User: c.Subject.CommonName}
	}
	return Identity{}
}

// PeerIdentity is the identity of the verified client certificate of the
// gRPC call in ctx; false when the call did not come over mutual TLS.
func PeerIdentity(ctx context.Context) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	id := IdentityOf(info.State.VerifiedChains[0][0])
	return id, id.Node || id.User != ""
}

// ConnIdentity is the identity of the verified client certificate of a TLS
// connection whose handshake is done (for the Raft stream layer).
func ConnIdentity(c *tls.Conn) (Identity, bool) {
	cs := c.ConnectionState()
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	id := IdentityOf(cs.VerifiedChains[0][0])
	return id, id.Node || id.User != ""
}

func loadPair(certPath, keyPath string) (tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load %s and %s: %w", certPath, keyPath, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("parse %s: %w", certPath, err)
		}
	}
	return pair, nil
}

func firstCert(pemData []byte) (*x509.Certificate, error) {
	pool, err := parseCerts(pemData)
	if err != nil {
		return nil, err
	}
	return pool[0], nil
}
