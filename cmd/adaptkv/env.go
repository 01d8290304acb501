package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/adaptkv/adaptkv/client"
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

// connectTo is connect with a given client configuration, to which the
// global timeout is applied.
func (a *app) connectTo(ctx context.Context, cfg client.Config) (*client.Client, context.Context, context.CancelFunc, error) {
	if a.timeout <= 0 {
		return nil, nil, nil, usagef("--timeout %v: must be positive", a.timeout)
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
