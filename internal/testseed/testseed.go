package testseed

import (
	"os"
	"strconv"
	"testing"
)

// FromEnv returns the seeds a test runs: the one in the variable name+"_SEED"
// when set (a replay), else 1..n where n is the variable name+"_SEEDS" or
// def. A malformed variable fails the test.
func FromEnv(t testing.TB, name string, def int) []uint64 {
	t.Helper()
	if s := os.Getenv(name + "_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s_SEED=%q: %v", name, s, err)
		}
		return []uint64{seed}
	}
	n := def
	if s := os.Getenv(name + "_SEEDS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("%s_SEEDS=%q: want a positive count", name, s)
		}
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}
