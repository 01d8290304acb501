package api_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
)

// TestLevelsMatchProto checks that api.Level and the protobuf enum agree
// value for value, since the server and the SDK convert between them with a
// plain type conversion.
func TestLevelsMatchProto(t *testing.T) {
	for v, pbName := range kvpb.Level_name {
		l := api.Level(v)
		if !l.Known() {
			t.Errorf("kvpb.%s = %d has no api.Level", pbName, v)
			continue
		}
		want := "LEVEL_" + strings.ToUpper(l.String())
		if l == api.LevelDefault {
			want = "LEVEL_UNSPECIFIED"
		}
		if pbName != want {
			t.Errorf("api.Level(%d) is %q, protobuf names it %s; want %s", v, l, pbName, want)
		}
	}
	for _, l := range api.Levels() {
		if _, ok := kvpb.Level_name[int32(l)]; !ok {
			t.Errorf("api.%v = %d is not a kvpb.Level", l, int32(l))
		}
	}
	if got, want := len(api.Levels()), len(kvpb.Level_name); got != want {
		t.Errorf("len(api.Levels()) = %d; want %d, one per protobuf value", got, want)
	}
}

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want api.Level
		ok   bool
	}{
		{"", api.LevelDefault, true},
		{"default", api.LevelDefault, true},
		{"one", api.LevelOne, true},
		{"QUORUM", api.LevelQuorum, true},
		{"All", api.LevelAll, true},
		{"custom", api.LevelCustom, true},
		{"Linearizable", api.LevelLinearizable, true},
		{api.AdaptiveName, api.LevelDefault, false},
		{"strong", api.LevelDefault, false},
	} {
		got, ok := api.ParseLevel(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, l := range api.Levels() {
		if got, ok := api.ParseLevel(l.String()); !ok || got != l {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, true", l.String(), got, ok, l)
		}
	}
	if got := api.Level(9).String(); got != "level(9)" {
		t.Errorf("Level(9).String() = %q; want level(9)", got)
	}
}

// TestReasonsAreDistinct guards the list the SDK's mapping test walks: a
// reason listed twice, or an empty one, is a copy-paste slip.
func TestReasonsAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range api.Reasons() {
		if r == "" || strings.ToUpper(r) != r || seen[r] {
			t.Errorf("reason %q: want a distinct, non-empty, upper-case word", r)
		}
		seen[r] = true
	}
}

// TestReasonsListsEveryReason parses names.go and checks that every Reason
// constant declared there is in api.Reasons(), the list the SDK's mapping
// test walks, so that a reason cannot be added and left out of it.
func TestReasonsListsEveryReason(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "names.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, r := range api.Reasons() {
		listed[r] = true
	}
	declared := 0
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Reason") {
					continue
				}
				declared++
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Errorf("%s is not a string literal", name.Name)
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				if !listed[v] {
					t.Errorf("%s = %q is not in api.Reasons()", name.Name, v)
				}
			}
		}
	}
	if declared != len(listed) {
		t.Errorf("names.go declares %d Reason constants, api.Reasons() lists %d distinct", declared, len(listed))
	}
}
