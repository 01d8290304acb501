package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// The user commands against a secure in-process cluster, as root by its
// client certificate (the permissions themselves are tested in node's
// TestUsersAndPermissions).
func TestUserCommands(t *testing.T) {
	certs := t.TempDir()
	for _, err := range []error{
		security.CreateCA(certs, security.CreateOptions{}),
		security.CreateNode(certs, []string{"127.0.0.1"}, security.CreateOptions{}),
		security.CreateClient(certs, security.RootUser, security.CreateOptions{}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	c := clustertest.New(t, 1, func(o *clustertest.Options) { o.CertsDir = certs })
	ep := c.Endpoints()[0]
	run := func(stdin string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		var in io.Reader = strings.NewReader(stdin)
		a := newApp(in, &out, &errOut)
		root := a.rootCommand()
		root.SetArgs(append([]string{"--endpoints", ep, "--certs-dir", certs, "-o", "json"}, args...))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, err := run(stdin, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	must("pw-of-carol\n", "user", "create", "carol", "--password-stdin")
	must("", "user", "grant", "carol", "--keyspace", "default", "--role", "read")
	must("", "user", "grant", "carol", "--keyspace", "*", "--role", "write")
	var u userJSON
	if err := json.Unmarshal([]byte(must("", "user", "revoke", "carol", "--keyspace", "*", "--role", "write")), &u); err != nil {
		t.Fatal(err)
	}
	if !u.HasPassword || len(u.Grants) != 1 || u.Grants[0].Keyspace != "default" || u.Grants[0].RoleName != "read" {
		t.Fatalf("carol after grant, grant, revoke: %+v", u)
	}
	var users []userJSON
	if err := json.Unmarshal([]byte(must("", "user", "list")), &users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Name != "carol" || users[1].Name != "root" || !users[1].ClusterAdmin {
		t.Fatalf("user list: %+v", users)
	}
	for _, bad := range [][]string{
		{"user", "grant", "carol", "--keyspace", "default"},
		{"user", "grant", "carol", "--cluster-admin", "--role", "read"},
		{"user", "grant", "carol", "--keyspace", "default", "--role", "owner"},
		{"user", "drop", "root"},
		{"user", "create", "Bad Name"},
		{"user", "passwd", "carol"}, // no password on stdin
	} {
		if _, err := run("", bad...); err == nil {
			t.Errorf("%v succeeded", bad)
		}
	}
	must("new-pw\n", "user", "passwd", "carol")
	must("", "user", "drop", "carol")
	if err := json.Unmarshal([]byte(must("", "user", "list")), &users); err != nil || len(users) != 1 {
		t.Fatalf("user list after drop: %+v, %v", users, err)
	}
}
