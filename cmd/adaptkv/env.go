package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
)

// envPrefix starts the environment variable of every flag.
const envPrefix = "ADAPTKV_"

// envName is the environment variable that sets flag name: "data-dir" is
// ADAPTKV_DATA_DIR.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag of fs that was not given on the command line from
// its ADAPTKV_<NAME> variable, if that is set and not empty. It walks the
// flags rather than binding each by hand, so that a new flag is covered
// without anyone remembering to. The command line wins because a person
// typing a flag means it more than a variable exported long ago.
func applyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := envName(f.Name)
		v, ok := lookup(name)
		if !ok || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s=%q for --%s: %w", name, v, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// clusterEndpoints returns the gRPC addresses to connect to: --endpoints if
// given, else every node of the local cluster in --dir.
func (a *app) clusterEndpoints() ([]string, error) {
	if len(a.endpoints) > 0 {
		return a.endpoints, nil
	}
	l, err := loadLayout(a.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no cluster to talk to: no --endpoints (or %s) given and no local cluster in %s; run `adaptkv cluster up` or pass --endpoints host:port",
			envName("endpoints"), filepath.Join(a.dir, layoutFile))
	}
	if err != nil {
		return nil, err
	}
	var eps []string
	for _, n := range l.live() {
		eps = append(eps, n.GRPCAddr)
	}
	return eps, nil
}

// connect returns a client for the cluster and a context bounded by
// --timeout. The caller closes the client and cancels the context.
func (a *app) connect(ctx context.Context) (*client.Client, context.Context, context.CancelFunc, error) {
	eps, err := a.clusterEndpoints()
	if err != nil {
		return nil, nil, nil, err
	}
	return a.connectTo(ctx, client.Config{Endpoints: eps})
}

// certsSubdir is where `cluster up` keeps a local cluster's certificates,
// under --dir.
const certsSubdir = "certs"

// clientCertsDir returns the certificate directory the command connects
// with: --certs-dir, else <--dir>/certs when it exists; "" with --insecure
// (plaintext). No certificates and no --insecure is an error that says
// what to do, not a silent fall back to plaintext.
func (a *app) clientCertsDir() (dir string, err error) {
	defer func() {
		if err == nil {
			a.usedTLS, a.usedPlaintext = a.usedTLS || dir != "", a.usedPlaintext || dir == ""
		}
	}()
	if a.insecure {
		return "", nil
	}
	if a.certsDir != "" {
		return a.certsDir, nil
	}
	if len(a.endpoints) == 0 && a.dir != "" {
		// The local cluster says itself whether it runs --insecure.
		if l, err := loadLayout(a.dir); err == nil && l.Insecure {
			return "", nil
		}
	}
	if a.dir != "" {
		d := filepath.Join(a.dir, certsSubdir)
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d, nil
		}
	}
	return "", usagef("no certificates to connect with: no --certs-dir (or %s) given and no %s; pass the certificate directory of the cluster (see `adaptkv cert`), or --insecure for a cluster started with --insecure",
		envName("certs-dir"), filepath.Join(a.dir, certsSubdir))
}

// grpcCreds returns the transport credentials of the CLI's own gRPC
// connections (those that do not go through the SDK): the same mutual TLS
// as the SDK's, or plaintext with --insecure.
func (a *app) grpcCreds() (grpc.DialOption, error) {
	dir, err := a.clientCertsDir()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	m, err := security.LoadClient(dir, a.user)
	if err != nil {
		return nil, usageErr(fmt.Errorf("--certs-dir %s, --user %s: %w", dir, a.user, err))
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(m.ClientConfig())), nil
}

// securityHint adds to msg, the description of a failed command, what
// may be wrong when the two ends disagree on TLS: a plaintext client of a
// secure cluster sees the connection closed, a TLS client of an insecure
// one a failed handshake.
func (a *app) securityHint(msg string) string {
	switch {
	case a.usedPlaintext && !a.usedTLS && (strings.Contains(msg, "server preface") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "cannot reach the cluster")):
		return msg + " (this command spoke plaintext: if the cluster is secure, drop --insecure and let the command find the certificates, or pass --certs-dir)"
	case a.usedTLS && !a.usedPlaintext && (strings.Contains(msg, "tls: ") || strings.Contains(msg, "cannot reach the cluster")):
		return msg + " (this command used TLS: if the cluster was started with --insecure, pass --insecure; otherwise check that --certs-dir holds the cluster's ca.crt and a client certificate it signed)"
	}
	return msg
}

// connectTo is connect with a given client configuration, to which the
// global timeout is applied.
func (a *app) connectTo(ctx context.Context, cfg client.Config) (*client.Client, context.Context, context.CancelFunc, error) {
	if a.timeout <= 0 {
		return nil, nil, nil, usagef("--timeout %v: must be positive", a.timeout)
	}
	if cfg.TLS == nil && cfg.CertsDir == "" {
		dir, err := a.clientCertsDir()
		if err != nil {
			return nil, nil, nil, err
		}
		cfg.CertsDir, cfg.User = dir, a.user
	}
	cfg.RequestTimeout = a.timeout
	// New waits up to DialTimeout for a first topology; a CLI run should
	// not spend most of its deadline there when some nodes are down.
	cfg.DialTimeout = min(a.timeout, 2*time.Second)
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	c, err := client.New(ctx, cfg)
	if err != nil {
		cancel()
		return nil, nil, nil, usageErr(err)
	}
	return c, ctx, cancel, nil
}
