package clustertest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: a closed
// cluster must leave nothing running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
