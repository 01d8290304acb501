package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// configFlag names the flag that reads a node's settings from a YAML file.
const configFlag = "config"

// applyConfigFile sets every flag of fs that is still at its default (not
// given on the command line, nor by its ADAPTKV_<FLAG> variable, which
// applyEnv has applied before) from the YAML file at path. The file is one
// mapping whose keys are the flags' names without the dashes, e.g.
//
//	id: n1
//	data-dir: /var/lib/adaptkv
//	seeds: [10.0.0.2:7401, 10.0.0.3:7401]
//	drain-timeout: 30s
//
// A key that names no flag, a key given twice, or a value the flag cannot
// take is an error naming the file, the line and the key: a typo must not
// leave a setting silently at its default.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--%s: %w", configFlag, err)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return fmt.Errorf("%s: not YAML: %w", path, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: want a mapping of flag names to values (e.g. \"id: n1\"), got a %s", path, root.Line, kindName(root))
	}
	seen := make(map[string]int)
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("%s:%d: a key must be a flag name, got a %s", path, k.Line, kindName(k)))
			continue
		}
		if line, dup := seen[name]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: key %q given twice (first on line %d)", path, k.Line, name, line))
			continue
		}
		seen[name] = k.Line
		f := fs.Lookup(name)
		if f == nil || name == configFlag || name == "help" {
			errs = append(errs, fmt.Errorf("%s:%d: unknown key %q: not a flag of `adaptkv node`%s", path, k.Line, name, suggestFlag(fs, name)))
			continue
		}
		val, err := flagValue(f, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: key %q: %w", path, v.Line, name, err))
			continue
		}
		if f.Changed {
			continue // the command line or the environment wins
		}
		if err := fs.Set(name, val); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: key %q: %w", path, v.Line, name, err))
			continue
		}
	}
	return errors.Join(errs...)
}

// flagValue turns a YAML value into the text the flag parses: a scalar as
// written, a sequence (for a list flag only) joined with commas. A
// mapping, or a sequence for a flag that takes one value, is a type error.
func flagValue(f *pflag.Flag, v *yaml.Node) (string, error) {
	list := strings.HasSuffix(f.Value.Type(), "Slice") || strings.HasSuffix(f.Value.Type(), "Array")
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return "", fmt.Errorf("no value; want a %s (leave the key out for the default)", typeName(f))
		}
		return v.Value, nil
	case yaml.SequenceNode:
		if !list {
			return "", fmt.Errorf("got a list; want a %s", typeName(f))
		}
		var items []string
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("line %d: a list item must be a plain value, got a %s", it.Line, kindName(it))
			}
			if strings.Contains(it.Value, ",") {
				return "", fmt.Errorf("line %d: item %q holds a comma; give one address per item", it.Line, it.Value)
			}
			items = append(items, it.Value)
		}
		return strings.Join(items, ","), nil
	}
	return "", fmt.Errorf("got a %s; want a %s", kindName(v), typeName(f))
}

// typeName says what a flag takes, in the words of the help text.
func typeName(f *pflag.Flag) string {
	switch t := f.Value.Type(); t {
	case "bool":
		return "boolean (true or false)"
	case "duration":
		return "duration (e.g. 30s)"
	case "int", "int64", "uint", "uint32", "uint64":
		return "whole number"
	case "stringSlice":
		return "list of values"
	default:
		return t
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.ScalarNode:
		return "plain value"
	}
	return "document"
}

// suggestFlag names the flag closest to a mistyped key, if one is close.
func suggestFlag(fs *pflag.FlagSet, name string) string {
	best, bestD := "", 3
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	slices.Sort(names)
	for _, n := range names {
		if d := editDistance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
