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

// --stream-rate defaults to 64 MiB/s and refuses a negative rate as a
// usage error.
func TestNodeStreamRateFlag(t *testing.T) {
	a := newApp(nil, io.Discard, io.Discard)
	if f := a.nodeCommand().Flags().Lookup("stream-rate"); f == nil || f.DefValue != "67108864" {
		t.Fatalf("--stream-rate: %+v; want default 67108864", f)
	}
	var stderr bytes.Buffer
	a = newApp(nil, io.Discard, &stderr)
	root := a.rootCommand()
	root.SetArgs([]string{"node", "--id", "x", "--in-memory", "--stream-rate", "-1"})
	cmd, err := root.ExecuteC()
	if err == nil {
		t.Fatal("--stream-rate -1 accepted")
	}
	if code := a.report(cmd, err); code != exitUsage || !strings.Contains(stderr.String(), "--stream-rate -1: must not be negative") {
		t.Errorf("exit %d, %q", code, stderr.String())
	}
}

// The status line of a stream says what streams, how far, how fast and
// from where the numbers come.
func TestStreamLine(t *testing.T) {
	for _, tc := range []struct {
		st   streamJSON
		want []string
	}{
		{streamJSON{Change: "join of n4", Since: 12}, []string{"join of n4 (since index 12): not started"}},
		{streamJSON{Change: "join of n4", Driver: "n1", Live: true, Keyspace: "default", KeyspacesTotal: 2, KeyspacesDone: 1,
			SourcesDone: 3, SourcesTotal: 6, RecordsPushed: 10, BytesScanned: 2e6, BytesPerSecond: 1e6, RateLimit: 4e6, Resumes: 1},
			[]string{"by n1 (live)", "keyspace default", "1/2 keyspaces", "3/6 sources (50%)", "10 records", "1.0 MB/s (limit 4.0 MB/s)", "1 resumes"}},
		{streamJSON{Change: "decommission of n2", Driver: "n3", KeyspacesTotal: 1}, []string{"(the last checkpoint)", "limit ?"}},
	} {
		got := streamLine(&tc.st)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%q lacks %q", got, w)
			}
		}
	}
}

// A bad --trace exporter or sample share is a usage error naming it.
func TestNodeTraceFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--trace", "jaeger"}, `unknown trace exporter "jaeger"`},
		{[]string{"--trace", "stdout", "--trace-sample", "0"}, "--trace-sample 0: want a share in (0, 1]"},
		{[]string{"--trace", "stdout", "--trace-sample", "1.5"}, "--trace-sample 1.5"},
	} {
		var stderr bytes.Buffer
		a := newApp(nil, io.Discard, &stderr)
		root := a.rootCommand()
		root.SetArgs(append([]string{"node", "--id", "x", "--in-memory", "--insecure"}, tc.args...))
		cmd, err := root.ExecuteC()
		if err == nil {
			t.Fatalf("%v accepted", tc.args)
		}
		if code := a.report(cmd, err); code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want usage error saying %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
