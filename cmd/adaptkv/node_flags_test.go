package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// The hint flags exist with their documented defaults and refuse values
// that make no sense, as usage errors (before any node starts).
func TestNodeHintFlags(t *testing.T) {
	a := newApp(nil, io.Discard, io.Discard)
	fs := a.nodeCommand().Flags()
	for name, want := range map[string]string{"max-hints": "1000000", "max-hint-window": "3h0m0s"} {
		f := fs.Lookup(name)
		if f == nil {
			t.Fatalf("adaptkv node has no --%s flag", name)
		}
		if f.DefValue != want {
			t.Errorf("--%s default %s; want %s", name, f.DefValue, want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-hints", "0"}, "--max-hints 0: want at least 1"},
		{[]string{"--max-hint-window", "0s"}, "--max-hint-window 0s: want a positive duration"},
	} {
		var stderr bytes.Buffer
		a := newApp(nil, io.Discard, &stderr)
		root := a.rootCommand()
		root.SetArgs(append([]string{"node", "--id", "x", "--in-memory"}, tc.args...))
		cmd, err := root.ExecuteC()
		if err == nil {
			t.Fatalf("%v accepted", tc.args)
		}
		if code := a.report(cmd, err); code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want usage error saying %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
