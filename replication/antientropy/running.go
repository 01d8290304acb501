package antientropy

// Running returns the keyspaces with a part of a pass running on this node
// now, with how many parts of each (a pass run by hand and a scheduled one
// may overlap unless exclusive). For status displays; the map is a copy.
func (r *Runner) Running() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.parts))
	for k, v := range r.parts {
		out[k] = v
	}
	return out
}
