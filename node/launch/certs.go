package launch

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

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

// spareHosts is how many addresses past the first Nodes a node certificate
// made by Secure names with HostPerNode, for the nodes AddNode and
// AddReplacement lay out later.
const spareHosts = 16

// Secure makes the nodes of cfg secure: it sets CertsDir to certsDir and
// makes the certificates there (CreateCerts) for the addresses the nodes
// bind (with HostPerNode, also for spareHosts nodes added later). Call it
// after setting Host, HostPerNode and Nodes.
func (cfg *Config) Secure(certsDir string) error {
	host := cmp.Or(cfg.Host, "127.0.0.1")
	hosts := []string{host}
	if cfg.HostPerNode {
		ip := net.ParseIP(host).To4()
		if ip == nil {
			return fmt.Errorf("launch: first address %q: want an IPv4 address", host)
		}
		hosts = nil
		for i := 0; i < max(cfg.Nodes, 3)+spareHosts && int(ip[3])+i <= 254; i++ {
			h := slices.Clone(ip)
			h[3] += byte(i)
			hosts = append(hosts, h.String())
		}
	}
	if err := CreateCerts(certsDir, hosts); err != nil {
		return err
	}
	cfg.CertsDir, cfg.Insecure = certsDir, false
	return nil
}

// DialOption returns the transport credentials of a raw gRPC connection to
// the cluster's nodes (for the services the SDK does not wrap): the root
// user's certificate, or plaintext for an insecure cluster.
func (c *Cluster) DialOption() (grpc.DialOption, error) {
	if c.cfg.Insecure {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	m, err := security.LoadClient(c.cfg.CertsDir, security.RootUser)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(m.ClientConfig())), nil
}
