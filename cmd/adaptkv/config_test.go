package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The config file sets every node flag by its name; the order is flag >
// environment > file > default; a bad file is refused with the line and
// the key.
func TestNodeConfigFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		args []string
		env  map[string]string
		want map[string]string // flag values after all sources
		err  string            // substring of the error, "" for none
	}{
		{
			name: "every kind of value",
			file: "id: n7\ndata-dir: /srv/kv\nseeds: [10.0.0.2:7401, 10.0.0.3:7401]\nbootstrap-expect: 3\nin-memory: false\ndrain-timeout: 45s\nmax-hints: 500\ninsecure: true\n",
			want: map[string]string{"id": "n7", "data-dir": "/srv/kv", "seeds": "[10.0.0.2:7401,10.0.0.3:7401]", "bootstrap-expect": "3", "drain-timeout": "45s", "max-hints": "500", "insecure": "true"},
		},
		{
			name: "seeds as one comma-separated value",
			file: "seeds: a:1,b:2\n",
			want: map[string]string{"seeds": "[a:1,b:2]"},
		},
		{
			name: "flag beats environment beats file beats default",
			file: "id: from-file\nzone: file-zone\ndata-dir: /file\nmax-hints: 7\n",
			args: []string{"--id", "from-flag"},
			env:  map[string]string{"ADAPTKV_ID": "from-env", "ADAPTKV_ZONE": "env-zone"},
			want: map[string]string{"id": "from-flag", "zone": "env-zone", "data-dir": "/file", "max-hints": "7", "gc-percent": "400"},
		},
		{name: "empty file", file: "", want: map[string]string{"id": ""}},
		{name: "comments only", file: "# nothing\n", want: map[string]string{"id": ""}},
		{name: "unknown key", file: "id: n1\n\ndata_dir: /x\n", err: `:3: unknown key "data_dir": not a flag of ` + "`adaptkv node`" + ` (did you mean "data-dir"?)`},
		{name: "config names itself", file: "config: other.yaml\n", err: `:1: unknown key "config"`},
		{name: "duplicate key", file: "id: a\nid: b\n", err: `:2: key "id" given twice (first on line 1)`},
		{name: "not a number", file: "id: n1\nbootstrap-expect: three\n", err: `:2: key "bootstrap-expect": `},
		{name: "duration without unit", file: "drain-timeout: 30\n", err: `:1: key "drain-timeout": `},
		{name: "bool as a word", file: "in-memory: yes please\n", err: `:1: key "in-memory": `},
		{name: "list for a single value", file: "id: [a, b]\n", err: `:1: key "id": got a list; want a string`},
		{name: "mapping for a list", file: "seeds:\n  a: b\n", err: `:2: key "seeds": got a mapping; want a list of values`},
		{name: "null value", file: "zone:\n", err: `:1: key "zone": no value`},
		{name: "not a mapping", file: "- id\n- n1\n", err: `:1: want a mapping of flag names to values`},
		{name: "not YAML", file: "id: [n1\n", err: "not YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "node.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			a := newApp(nil, io.Discard, io.Discard)
			root := a.rootCommand()
			cmd, rest, err := root.Find(append([]string{"node"}, tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Fatal(err)
			}
			fs := cmd.Flags()
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			if err := applyEnv(fs, lookup); err != nil {
				t.Fatal(err)
			}
			err = applyConfigFile(fs, path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), path) {
					t.Fatalf("error %v; want one starting with %s and saying %q", err, path, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				if got := fs.Lookup(k).Value.String(); got != want {
					t.Errorf("--%s = %q; want %q", k, got, want)
				}
			}
		})
	}
}

// A bad config file stops `adaptkv node` with the usage exit status before
// anything starts; a missing one too.
func TestNodeConfigFileExit(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: n1\nin-memory: true\nseedz: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{bad, bad + `:3: unknown key "seedz"`},
		{filepath.Join(dir, "missing.yaml"), "--config: open "},
	} {
		var stderr bytes.Buffer
		a := newApp(nil, io.Discard, &stderr)
		root := a.rootCommand()
		root.SetArgs([]string{"node", "--insecure", "--config", tc.file})
		cmd, err := root.ExecuteC()
		if err == nil {
			t.Fatalf("%s accepted", tc.file)
		}
		if code := a.report(cmd, err); code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, %q; want exit %d saying %q", tc.file, code, stderr.String(), exitUsage, tc.want)
		}
	}
}
