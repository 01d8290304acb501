// Package security holds adaptkv's transport security: the certificate
// authority, node and client certificates (creation, loading, reloading
// without a restart), the identity a certificate stands for, and the
// gossip encryption key.
//
// # Layout of a certificate directory
//
// One directory (`--certs-dir`) holds everything a process needs, with the
// names CockroachDB users know:
//
//	ca.crt            the cluster's CA certificate (every process)
//	ca.key            the CA's private key (only where certificates are made;
//	                  move it somewhere safe on a real deployment)
//	node.crt/.key     a node's certificate, used as server and as client on
//	                  the peer and Raft links
//	client.USER.crt   a client certificate for user USER (and its .key)
//	gossip.key        the first gossip encryption key (32 random bytes,
//	                  base64); later keys travel through the metadata log
//
// # Identities
//
// A node certificate carries the organizational unit NodeOU and the common
// name "node"; a client certificate carries ClientOU and the user's name as
// its common name. Both are signed by the same CA, so the OU is what tells
// a peer from a user: peer RPCs and Raft accept only NodeOU, and the user of
// a client RPC is the common name of a ClientOU certificate.
//
// All keys are ECDSA P-256 and every TLS configuration here requires TLS 1.3.
package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// File names inside a certificate directory.
const (
	CACertFile    = "ca.crt"
	CAKeyFile     = "ca.key"
	NodeCertFile  = "node.crt"
	NodeKeyFile   = "node.key"
	GossipKeyFile = "gossip.key"
)

// Organizational units that tell node certificates from client ones.
const (
	NodeOU   = "adaptkv-node"
	ClientOU = "adaptkv-client"
)

// NodeCommonName is the common name of every node certificate. It is not a
// valid user name, so no client certificate can pass for a node by name.
const NodeCommonName = "node"

// RootUser is the user a new cluster starts with, holding every permission.
const RootUser = "root"

// Default validity periods: long for the CA (replacing it is a cluster-wide
// operation), shorter for the certificates it signs, as CockroachDB does.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 5 * 365 * 24 * time.Hour
)

// ErrExists is returned when creating a file that is already there and
// Overwrite was not asked for: a certificate tool must never silently
// replace a CA that running nodes trust.
var ErrExists = errors.New("already exists")

// ErrBadUser is returned for a user name that cannot be a certificate's.
var ErrBadUser = errors.New("invalid user name")

var userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,62}$`)

// ValidUser reports whether name can be a user: lower-case letters, digits,
// '_', '.', '-', starting with a letter or '_', at most 63 characters, and
// not the reserved NodeCommonName.
func ValidUser(name string) error {
	if !userNameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use lower-case letters, digits, '_', '.' and '-', starting with a letter, at most 63 characters", ErrBadUser, name)
	}
	if name == NodeCommonName {
		return fmt.Errorf("%w %q: reserved for node certificates", ErrBadUser, name)
	}
	return nil
}

// ClientCertFile and ClientKeyFile name user's client certificate and key.
func ClientCertFile(user string) string { return "client." + user + ".crt" }

// ClientKeyFile names user's client key; see ClientCertFile.
func ClientKeyFile(user string) string { return "client." + user + ".key" }

// CreateOptions tunes certificate creation.
type CreateOptions struct {
	// Validity is how long the certificate is valid; 0 means the default.
	Validity time.Duration
	// Overwrite replaces existing files instead of failing with ErrExists.
	Overwrite bool
	// CAKeyPath is where the CA key is read from (or written to, by
	// CreateCA); empty means dir/ca.key.
	CAKeyPath string
	// Now is the issue time; zero means time.Now. Tests set it to make
	// expired or not-yet-valid certificates.
	Now time.Time
}

func (o CreateOptions) caKeyPath(dir string) string {
	if o.CAKeyPath != "" {
		return o.CAKeyPath
	}
	return filepath.Join(dir, CAKeyFile)
}

func (o CreateOptions) now() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

// CreateCA writes a new CA certificate to dir/ca.crt and its key to the CA
// key path (mode 0600).
func CreateCA(dir string, opts CreateOptions) error {
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultCAValidity
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), opts.caKeyPath(dir)
	if err := mayWrite(opts.Overwrite, certPath, keyPath); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate CA key: %w", err)
	}
	now := opts.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "adaptkv CA", Organization: []string{"adaptkv"}},
		NotBefore:             now.Add(-time.Hour), // tolerate skewed clocks
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create CA certificate: %w", err)
	}
	return writePair(certPath, der, keyPath, key)
}

// CreateNode writes a node certificate signed by dir's CA to dir/node.crt
// and dir/node.key, valid for hosts (IP addresses or DNS names; "localhost"
// and 127.0.0.1 are always added so that local tools can connect).
func CreateNode(dir string, hosts []string, opts CreateOptions) error {
	if len(hosts) == 0 {
		return errors.New("a node certificate needs at least one host (--host)")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: NodeCommonName, Organization: []string{"adaptkv"}, OrganizationalUnit: []string{NodeOU}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	seen := map[string]bool{}
	for _, h := range append(append([]string(nil), hosts...), "localhost", "127.0.0.1") {
		h = strings.TrimSpace(h)
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return sign(dir, tmpl, filepath.Join(dir, NodeCertFile), filepath.Join(dir, NodeKeyFile), opts)
}

// CreateClient writes a client certificate for user, signed by dir's CA,
// to dir/client.USER.crt and dir/client.USER.key.
func CreateClient(dir, user string, opts CreateOptions) error {
	if err := ValidUser(user); err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: []string{"adaptkv"}, OrganizationalUnit: []string{ClientOU}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return sign(dir, tmpl, filepath.Join(dir, ClientCertFile(user)), filepath.Join(dir, ClientKeyFile(user)), opts)
}

func sign(dir string, tmpl *x509.Certificate, certPath, keyPath string, opts CreateOptions) error {
	if err := mayWrite(opts.Overwrite, certPath, keyPath); err != nil {
		return err
	}
	ca, caKey, err := loadCA(dir, opts.caKeyPath(dir))
	if err != nil {
		return err
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultCertValidity
	}
	now := opts.now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.NotAfter) {
		// A certificate cannot outlive its CA usefully; say so by its dates.
		tmpl.NotAfter = ca.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("sign certificate: %w", err)
	}
	return writePair(certPath, der, keyPath, key)
}

func loadCA(dir, keyPath string) (*x509.Certificate, any, error) {
	pair, err := loadPair(filepath.Join(dir, CACertFile), keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("load CA (create it with `adaptkv cert create-ca`): %w", err)
	}
	if !pair.Leaf.IsCA {
		return nil, nil, fmt.Errorf("%s is not a CA certificate", filepath.Join(dir, CACertFile))
	}
	return pair.Leaf, pair.PrivateKey, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

func mayWrite(overwrite bool, paths ...string) error {
	if overwrite {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s: %w (pass --overwrite to replace it)", p, ErrExists)
		}
	}
	return nil
}

// writePair writes the certificate and key atomically (temporary file and
// rename), so that a process reloading its certificates never reads half
// a file.
func writePair(certPath string, der []byte, keyPath string, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	// The key first: a reloading process that sees the new certificate must
	// find its key.
	if err := writeAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
