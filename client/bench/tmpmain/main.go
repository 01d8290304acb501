package main

import (
	"os"

	"github.com/adaptkv/adaptkv/client/bench"
)

func main() {
	if err := bench.NewCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
