package node

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every
// test stops the nodes it starts, and a stopped node must leave nothing
// running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
