package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/internal/security"
)

// certFlags are the flags shared by the cert create commands.
type certFlags struct {
	caKey     string
	validity  string
	overwrite bool
}

func (f *certFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.caKey, "ca-key", "", "the CA's private key (default: <certs-dir>/ca.key); keep it off the nodes on a real deployment")
	cmd.Flags().StringVar(&f.validity, "validity", "", "how long the certificate is valid, e.g. 8760h or 365d (default: 10 years for the CA, 5 for the others)")
	cmd.Flags().BoolVar(&f.overwrite, "overwrite", false, "replace existing files (rotation: running nodes pick up a new node certificate on SIGHUP or within 10 s)")
}

// options turns the flags into security.CreateOptions; a bad --validity is
// a usage error.
func (f *certFlags) options() (security.CreateOptions, error) {
	o := security.CreateOptions{CAKeyPath: f.caKey, Overwrite: f.overwrite}
	if f.validity == "" {
		return o, nil
	}
	d, err := parseValidity(f.validity)
	if err != nil {
		return o, usageErr(err)
	}
	o.Validity = d
	return o, nil
}

// parseValidity reads a Go duration or a whole number of days ("365d"):
// certificate lifetimes are spoken of in days, which Go durations lack.
func parseValidity(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("--validity %q: want a duration such as 8760h or a number of days such as 365d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("--validity %q: want a duration such as 8760h or a number of days such as 365d", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("--validity %q: must be positive", s)
	}
	return d, nil
}

// certDir is the directory the cert commands work in: --certs-dir, else
// the local cluster's <--dir>/certs.
func (a *app) certDir() (string, error) {
	if a.certsDir != "" {
		return a.certsDir, nil
	}
	if a.dir == "" {
		return "", usagef("--certs-dir is required (and --dir is empty)")
	}
	return filepath.Join(a.dir, certsSubdir), nil
}

// certError makes the caller's mistakes (a file that exists without
// --overwrite, a bad user name) usage errors.
func certError(err error) error {
	if errors.Is(err, security.ErrExists) || errors.Is(err, security.ErrBadUser) {
		return usageErr(err)
	}
	return err
}

func (a *app) certCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Create and list the certificates of a secure cluster (create-ca, create-node, create-client, list)",
		Long: `Create the certificate authority of a cluster and the certificates it signs,
in one certificate directory (--certs-dir, default <--dir>/certs, where
` + "`cluster up`" + ` keeps the local cluster's):

  ca.crt, ca.key        the CA (create-ca); every process needs ca.crt,
                        only the certificate maker needs ca.key
  node.crt, node.key    a node's certificate (create-node), server and
                        client on the peer and Raft links
  client.USER.crt/.key  a user's client certificate (create-client)
  gossip.key            the gossip encryption key (create-ca, if absent)

Keys are ECDSA P-256; every connection is mutual TLS 1.3. To rotate a
node's certificate, create it again with --overwrite; the node reloads it
on SIGHUP or within 10 seconds.`,
		Example: `  adaptkv cert create-ca --certs-dir certs
  adaptkv cert create-node --certs-dir certs --host 10.0.0.1,node1.example.com
  adaptkv cert create-client --certs-dir certs root
  adaptkv cert list --certs-dir certs`,
	}
	cmd.AddCommand(a.certCreateCACommand(), a.certCreateNodeCommand(), a.certCreateClientCommand(), a.certListCommand())
	return cmd
}

func (a *app) certCreateCACommand() *cobra.Command {
	var f certFlags
	cmd := &cobra.Command{
		Use:   "create-ca",
		Short: "Create the certificate authority (ca.crt, ca.key) and gossip.key if absent",
		Args:  cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := a.certDir()
			if err != nil {
				return err
			}
			o, err := f.options()
			if err != nil {
				return err
			}
			if err := security.CreateCA(dir, o); err != nil {
				return certError(err)
			}
			if _, err := os.Stat(filepath.Join(dir, security.GossipKeyFile)); errors.Is(err, os.ErrNotExist) {
				if err := security.CreateGossipKey(dir, false); err != nil {
					return err
				}
			}
			return a.printCerts(dir, security.CACertFile)
		},
	}
	f.add(cmd)
	return cmd
}

func (a *app) certCreateNodeCommand() *cobra.Command {
	var f certFlags
	var hosts []string
	cmd := &cobra.Command{
		Use:   "create-node --host H[,H...]",
		Short: "Create a node certificate (node.crt, node.key) for the node's addresses",
		Long: `Create a node certificate signed by the CA, valid for the given hosts (the
IP addresses and DNS names clients and peers dial the node by; localhost
and 127.0.0.1 are always added). Every node of a cluster may share one
node certificate that names all their hosts, or have its own.`,
		Args: cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(hosts) == 0 {
				return usagef("--host is required: the addresses (IP or DNS name) the node is reached at, comma-separated")
			}
			dir, err := a.certDir()
			if err != nil {
				return err
			}
			o, err := f.options()
			if err != nil {
				return err
			}
			if err := security.CreateNode(dir, hosts, o); err != nil {
				return certError(err)
			}
			return a.printCerts(dir, security.NodeCertFile)
		},
	}
	f.add(cmd)
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "IP addresses and DNS names of the node, comma-separated (required)")
	return cmd
}

func (a *app) certCreateClientCommand() *cobra.Command {
	var f certFlags
	cmd := &cobra.Command{
		Use:   "create-client USER",
		Short: "Create a client certificate for USER (client.USER.crt, client.USER.key)",
		Args:  cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := a.certDir()
			if err != nil {
				return err
			}
			o, err := f.options()
			if err != nil {
				return err
			}
			if err := security.CreateClient(dir, args[0], o); err != nil {
				return certError(err)
			}
			return a.printCerts(dir, security.ClientCertFile(args[0]))
		},
	}
	f.add(cmd)
	return cmd
}

func (a *app) certListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the certificates in the certificate directory: kind, identity, expiry",
		Args:  cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := a.certDir()
			if err != nil {
				return err
			}
			if _, err := os.Stat(dir); err != nil {
				return fmt.Errorf("certificate directory: %w (create one with `adaptkv cert create-ca`)", err)
			}
			return a.printCerts(dir)
		},
	}
}

// certJSON describes one file of a certificate directory.
type certJSON struct {
	File string `json:"file"`
	// Kind is ca, node, client or gossip-key.
	Kind string `json:"kind"`
	// Identity is who the certificate stands for: "node", "user NAME" or
	// the CA's subject.
	Identity string   `json:"identity,omitempty"`
	Hosts    []string `json:"hosts,omitempty"`
	// NotAfter is the expiry; empty for a key.
	NotAfter *time.Time `json:"not_after,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// describeCertFile reads one file of a certificate directory.
func describeCertFile(dir, name string) certJSON {
	out := certJSON{File: name}
	if name == security.GossipKeyFile {
		out.Kind = "gossip-key"
		if _, err := security.LoadGossipKey(dir); err != nil {
			out.Error = err.Error()
		}
		return out
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		out.Error = err.Error()
		return out
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		out.Error = "no PEM certificate"
		return out
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.NotAfter = &c.NotAfter
	id := security.IdentityOf(c)
	switch {
	case c.IsCA:
		out.Kind, out.Identity = "ca", c.Subject.CommonName
	case id.Node:
		out.Kind, out.Identity = "node", id.String()
		out.Hosts = append(out.Hosts, c.DNSNames...)
		for _, ip := range c.IPAddresses {
			out.Hosts = append(out.Hosts, ip.String())
		}
	case id.User != "":
		out.Kind, out.Identity = "client", id.String()
	default:
		out.Kind, out.Identity = "unknown", c.Subject.String()
	}
	return out
}

// printCerts prints the given files of dir, or with none every certificate
// and the gossip key.
func (a *app) printCerts(dir string, names ...string) error {
	if len(names) == 0 {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".crt") || n == security.GossipKeyFile) {
				names = append(names, n)
			}
		}
		// The CA first, as it is what everything else hangs on.
		slices.SortStableFunc(names, func(x, y string) int {
			return boolInt(y == security.CACertFile) - boolInt(x == security.CACertFile)
		})
	}
	var out []certJSON
	for _, n := range names {
		out = append(out, describeCertFile(dir, n))
	}
	if a.json() {
		return a.printJSON(map[string]any{"certs_dir": dir, "files": out})
	}
	fmt.Fprintf(a.stdout, "certificate directory %s\n", dir)
	tw := a.table()
	fmt.Fprintln(tw, "FILE\tKIND\tIDENTITY\tEXPIRES\tHOSTS")
	for _, c := range out {
		exp := "-"
		if c.NotAfter != nil {
			exp = fmt.Sprintf("%s (%s)", c.NotAfter.UTC().Format(time.DateOnly), untilText(time.Until(*c.NotAfter)))
		}
		ident := c.Identity
		if c.Error != "" {
			ident = "ERROR: " + c.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.File, c.Kind, ident, exp, strings.Join(c.Hosts, ","))
	}
	return tw.Flush()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// untilText writes a time to expiry in days, or "EXPIRED".
func untilText(d time.Duration) string {
	switch {
	case d <= 0:
		return "EXPIRED"
	case d < 48*time.Hour:
		return "in " + d.Round(time.Minute).String()
	}
	return fmt.Sprintf("in %dd", int(d.Hours()/24))
}
