package cluster

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/adaptkv/adaptkv/internal/security"
)

// The harness's nodes are secure by default: New makes a certificate
// directory whose node certificate names every node's address and the
// spare ones nodes added later take, and every node's command line has
// --certs-dir; with Insecure they run --insecure and no certificate is
// made.
func TestNodesSecureByDefault(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{Bin: "/bin/true", Nodes: 3, Dir: dir, FirstIP: "127.0.64.2", BasePort: 20000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	certs := filepath.Join(dir, "certs")
	for _, n := range c.Nodes() {
		if args := strings.Join(c.Args(n), " "); !strings.Contains(args, "--certs-dir "+certs) || strings.Contains(args, "--insecure") {
			t.Errorf("%s args %q", n.ID, args)
		}
	}
	b, err := os.ReadFile(filepath.Join(certs, security.NodeCertFile))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, want := range []string{"127.0.64.2", "127.0.64.4", "127.0.64.10"} { // n1, n3, a node added later
		if !slices.Contains(ips, want) {
			t.Errorf("node certificate names %v, not %s", ips, want)
		}
	}
	if _, err := security.LoadClient(certs, security.RootUser); err != nil {
		t.Errorf("no root client certificate: %v", err)
	}

	idir := t.TempDir()
	ic, err := New(Config{Bin: "/bin/true", Nodes: 3, Dir: idir, FirstIP: "127.0.64.2", BasePort: 20000, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if args := strings.Join(ic.Args(ic.Nodes()[0]), " "); !strings.Contains(args, "--insecure") || strings.Contains(args, "--certs-dir") {
		t.Errorf("insecure args %q", args)
	}
	if _, err := os.Stat(filepath.Join(idir, "certs")); !os.IsNotExist(err) {
		t.Errorf("an insecure cluster made certificates (%v)", err)
	}
}
