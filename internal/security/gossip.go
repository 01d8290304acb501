package security

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// GossipKeySize is the size of a gossip encryption key: AES-256.
const GossipKeySize = 32

// ErrBadGossipKey is returned for a gossip key that is not GossipKeySize
// bytes in standard base64.
var ErrBadGossipKey = errors.New("invalid gossip key")

// NewGossipKey returns a fresh random gossip key.
func NewGossipKey() []byte {
	k := make([]byte, GossipKeySize)
	if _, err := rand.Read(k); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return k
}

// EncodeGossipKey writes a key the way users pass it (standard base64).
func EncodeGossipKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// DecodeGossipKey parses a key in standard base64.
func DecodeGossipKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %v", ErrBadGossipKey, err)
	}
	if len(k) != GossipKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadGossipKey, len(k), GossipKeySize)
	}
	return k, nil
}

// CreateGossipKey writes a fresh key to dir/gossip.key (mode 0600).
func CreateGossipKey(dir string, overwrite bool) error {
	p := filepath.Join(dir, GossipKeyFile)
	if err := mayWrite(overwrite, p); err != nil {
		return err
	}
	return writeAtomic(p, []byte(EncodeGossipKey(NewGossipKey())+"\n"), 0o600)
}

// LoadGossipKey reads dir/gossip.key; os.ErrNotExist (wrapped) when there
// is none.
func LoadGossipKey(dir string) ([]byte, error) {
	p := filepath.Join(dir, GossipKeyFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read gossip key: %w", err)
	}
	k, err := DecodeGossipKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return k, nil
}

func parseCerts(pemData []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, pemData = pem.Decode(pemData)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}
