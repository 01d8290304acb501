package replication

import (
	"sync"
	"time"
)

// Clock is a hybrid logical clock (Kulkarni et al., 2014). Its readings are
// uint64: the upper 48 bits are Unix milliseconds, the lower 16 a counter that
// orders events within one millisecond and carries causality across nodes
// whose physical clocks disagree. A node's versions are strictly increasing
// and greater than every version the node has seen, so a write coordinated
// after a read of version v always gets a version above v.
type Clock struct {
	mu   sync.Mutex
	last uint64
	now  func() time.Time
}

const logicalBits = 16

// NewClock returns a clock reading physical time from now (time.Now when nil).
// Tests and the Jepsen clock nemesis inject a skewed source here.
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// SetSource replaces the physical time source.
func (c *Clock) SetSource(now func() time.Time) {
	c.mu.Lock()
	c.now = now
	c.mu.Unlock()
}

// Now returns a reading greater than every earlier reading and every value
// passed to Observe.
func (c *Clock) Now() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	phys := uint64(c.now().UnixMilli()) << logicalBits
	if phys > c.last {
		c.last = phys
	} else {
		c.last++
	}
	return c.last
}

// Physical returns the clock's physical time source's reading.
func (c *Clock) Physical() time.Time {
	c.mu.Lock()
	now := c.now
	c.mu.Unlock()
	return now()
}

// Observe moves the clock past a timestamp seen from another node.
func (c *Clock) Observe(ts uint64) {
	c.mu.Lock()
	if ts > c.last {
		c.last = ts
	}
	c.mu.Unlock()
}
