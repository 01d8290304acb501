package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/adaptkv/adaptkv/client"
)

// TestCLIConditional drives put and del with conditions, the linearizable
// level, and a keyspace whose default is linearizable: applied writes exit
// 0, a condition that does not hold exits 4 with the current value, bad
// flags exit 2 before anything is sent.
func TestCLIConditional(t *testing.T) {
	t.Parallel()
	tc := startCluster(t, 3)

	cond := func(r result) condJSON {
		t.Helper()
		var c condJSON
		if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
			t.Fatalf("conditional write output is not JSON: %v\n%v", err, r)
		}
		return c
	}

	c := cond(tc.mustRun("put", "lock", "me", "--if-absent"))
	if !c.Applied || c.Version == nil || c.Receipt.Level != "linearizable" || c.Receipt.Required != 2 {
		t.Fatalf("put --if-absent on a new key: %+v", c)
	}
	r := tc.run(nil, "put", "lock", "you", "--if-absent")
	expectFail(t, r, exitCondFailed, `condition not met: nothing written; current value "me", version `)
	if c := cond(r); c.Applied || c.Current == nil || !c.Current.Found || *c.Current.Value != "me" {
		t.Fatalf("put --if-absent on an existing key: %+v", c)
	}

	// The version as get prints it is what --if-version takes.
	r = tc.mustRun("get", "lock", "-o", "table", "--consistency", "linearizable")
	m := regexp.MustCompile(`version=(\d+\.\d+) level=linearizable `).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("get -o table prints no version: %v", r)
	}
	v1 := m[1]
	r = tc.mustRun("put", "lock", "you", "--if-version", v1, "-o", "table")
	if !strings.HasPrefix(r.stdout, "OK  version=") {
		t.Fatalf("put --if-version (table): %v", r)
	}
	expectFail(t, tc.run(nil, "put", "lock", "again", "--if-version", v1, "-o", "table"), exitCondFailed, `current value "you"`)
	expectFail(t, tc.run(nil, "del", "lock", "--if-value", "me"), exitCondFailed, "condition not met")
	c = cond(tc.mustRun("put", "lock", "them", "--if-value", "you"))
	if !c.Applied {
		t.Fatalf("put --if-value: %+v", c)
	}
	c = cond(tc.mustRun("del", "lock", "--if-version", versionText(client.Version{Timestamp: c.Version.Timestamp, Node: c.Version.Node})))
	if !c.Applied || !c.Deleted {
		t.Fatalf("del --if-version: %+v", c)
	}
	expectFail(t, tc.run(nil, "put", "lock", "x", "--if-version", v1), exitCondFailed, "the key does not exist")

	// Plain writes and reads at linearizable; a keyspace whose default is
	// linearizable.
	tc.mustRun("put", "plain", "v", "--consistency", "linearizable")
	if g := getResult(t, tc.mustRun("get", "plain", "--consistency", "linearizable")); g.Receipt.Level != "linearizable" || *g.Value != "v" {
		t.Fatalf("get --consistency linearizable: %+v", g)
	}
	tc.mustRun("keyspace", "create", "strict", "--rf", "3", "--consistency", "linearizable")
	tc.mustRun("put", "k", "v", "--keyspace", "strict")
	if g := getResult(t, tc.mustRun("get", "k", "--keyspace", "strict")); g.Receipt.Level != "linearizable" {
		t.Fatalf("get in a linearizable keyspace: %+v", g)
	}

	// Usage errors: nothing is sent.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"put", "k", "v", "--if-version", "12"}, "--if-version: \"12\" is not a version"},
		{[]string{"put", "k", "v", "--if-version", "x.1"}, "is not a version"},
		{[]string{"put", "k", "v", "--if-absent", "--if-value", "a"}, "--if-absent and --if-value cannot be combined"},
		{[]string{"put", "k", "v", "--if-absent", "--consistency", "one"}, "--consistency one cannot be combined"},
		{[]string{"put", "k", "v", "--if-absent", "--r", "1"}, "--r/--w cannot be combined"},
		{[]string{"put", "k", "v", "--if-absent", "--session", "new"}, "cannot be combined with --session"},
		{[]string{"del", "k", "--if-absent"}, "unknown flag: --if-absent"},
		{[]string{"get", "k", "--consistency", "strict"}, "want one, quorum, all or linearizable"},
	} {
		expectFail(t, tc.run(nil, tt.args...), exitUsage, tt.want)
	}
}
