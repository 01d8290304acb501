package security

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
)

// APIServerConfig is the configuration of the gRPC API listener: TLS 1.3,
// the current certificate served, and a client certificate verified
// against the current CA when one is presented but not required, because
// a client that logs in with a password holds none. Plaintext is still
// refused by TLS itself; what a caller without a certificate may do (log
// in, and then what its token allows) is decided per call by the node's
// authorization interceptors. Raft, which has no such callers, keeps
// ServerConfig.
func (m *Material) APIServerConfig() *tls.Config {
	return m.serverConfig(tls.VerifyClientCertIfGiven)
}

// CAClientConfig is the configuration of a dialer that holds no
// certificate of its own (a client that logs in with a password): TLS 1.3,
// the server verified as a node of the CA in dir's ca.crt.
func CAClientConfig(dir string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", filepath.Join(dir, CACertFile))
	}
	// As ClientConfig: the chain and the dialed host checked by TLS, the
	// server required to be a node.
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !IdentityOf(cs.PeerCertificates[0]).Node {
				return fmt.Errorf("tls: server certificate: %w", ErrNotNode)
			}
			return nil
		},
	}, nil
}
