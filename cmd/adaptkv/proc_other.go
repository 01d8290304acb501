//go:build !unix

package main

import "errors"

// The local cluster manages node processes with Unix sessions, signals and
// /proc (node/launch); elsewhere only the node, data and admin commands
// work.

var errNoLocalCluster = errors.New("local clusters (adaptkv cluster ...) need a Unix system")

func lockDir(dir string) (func(), error) { return nil, errNoLocalCluster }
