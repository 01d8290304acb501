package main

import (
	"strings"
	"testing"

	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// TestKeyringCLI drives `adaptkv keyring` against an --insecure cluster: generate prints usable keys, bad keys are
// usage errors, and an insecure cluster says its gossip is not encrypted.
// The rotation itself is tested in node (TestGossipKeyRotationUnderLoad).
func TestKeyringCLI(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 1, func(o *clustertest.Options) { o.InMemory = true })
	env := []string{envName("dir") + "=" + t.TempDir(), envName("endpoints") + "=" + strings.Join(c.Endpoints(), ","), envName("insecure") + "=true"}
	run := func(args ...string) result { return runBin(t, env, nil, args...) }

	r := run("keyring", "generate")
	if r.code != 0 {
		t.Fatalf("keyring generate: %v", r)
	}
	key := strings.TrimSpace(r.stdout)
	if _, err := security.DecodeGossipKey(key); err != nil {
		t.Fatalf("generated key %q: %v", key, err)
	}
	expectFail(t, run("keyring", "install", "c2hvcnQ="), exitUsage, "invalid gossip key")
	expectFail(t, run("keyring", "use"), exitUsage, "accepts 1 arg")
	expectFail(t, run("keyring", "install", key), exitFailure, "gossip is not encrypted")
	expectFail(t, run("keyring", "list"), exitFailure, "gossip is not encrypted")
}
