package launch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/adaptkv/adaptkv/internal/security"
)

// CreateCerts makes dir a certificate directory for a cluster whose nodes
// are reached at hosts: a CA, one node certificate for every host (with
// localhost and 127.0.0.1), a client certificate for the root user and a
// gossip key. A file that exists is kept, so that a cluster restarted on
// the same directory keeps trusting its certificates; a directory with
// certificates but no CA key cannot make the missing ones and says so.
func CreateCerts(dir string, hosts []string) error {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	if !exists(security.CACertFile) {
		if exists(security.NodeCertFile) {
			return fmt.Errorf("launch: %s has a node certificate but no CA certificate; remove the folder to start over", dir)
		}
		if err := security.CreateCA(dir, security.CreateOptions{}); err != nil {
			return fmt.Errorf("launch: %w", err)
		}
	}
	if !exists(security.GossipKeyFile) {
		if err := security.CreateGossipKey(dir, false); err != nil {
			return fmt.Errorf("launch: %w", err)
		}
	}
	if !exists(security.NodeCertFile) {
		if err := security.CreateNode(dir, hosts, security.CreateOptions{}); err != nil {
			return fmt.Errorf("launch: %w", err)
		}
	}
	if !exists(security.ClientCertFile(security.RootUser)) {
		if err := security.CreateClient(dir, security.RootUser, security.CreateOptions{}); err != nil {
			return fmt.Errorf("launch: %w", err)
		}
	}
	// Checked last, so that a damaged directory is reported rather than
	// handed to the nodes.
	if _, err := security.LoadNode(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("launch: %s: %w", dir, err)
		}
		return fmt.Errorf("launch: certificates in %s: %w", dir, err)
	}
	return nil
}
