package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: the
// local clusters the command starts in process must stop completely.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
