package client

import "slices"

// noteFlagged remembers m's address when the health detector flagged it.
func (t *topology) noteFlagged(m Member) {
	if !m.Flagged || m.GRPCAddr == "" {
		return
	}
	if t.flagged == nil {
		t.flagged = map[string]bool{}
	}
	t.flagged[m.GRPCAddr] = true
}

// demoteFlagged moves the addresses of flagged members to the end, keeping
// the order otherwise: a flagged node stops coordinating this client's
// requests while another node can, and remains a last resort, so routing
// around it never costs availability.
func (t *topology) demoteFlagged(addrs []string) []string {
	if len(t.flagged) == 0 {
		return addrs
	}
	out := slices.Clone(addrs)
	slices.SortStableFunc(out, func(a, b string) int {
		switch fa, fb := t.flagged[a], t.flagged[b]; {
		case fa == fb:
			return 0
		case fa:
			return 1
		}
		return -1
	})
	return out
}
