package tuner

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestGoalValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Goal)
		want string // substring of the error; "" for valid
	}{
		{"default", func(*Goal) {}, ""},
		{"zero stale bound", func(g *Goal) { g.MaxStale = 0 }, ""},
		{"stale bound 1", func(g *Goal) { g.MaxStale = 1 }, "max stale-read probability 1 is outside [0, 1)"},
		{"negative stale bound", func(g *Goal) { g.MaxStale = -0.1 }, "max stale-read probability -0.1"},
		{"floor", func(g *Goal) { g.Floor = 7 }, "floor 7 is not one, quorum or session"},
		{"min rf", func(g *Goal) { g.MinRF = 0 }, "minimum replication factor 0 is below 1"},
		{"max below min", func(g *Goal) { g.MinRF, g.MaxRF = 5, 3 }, "maximum replication factor 3 is below the minimum 5"},
		{"max too large", func(g *Goal) { g.MaxRF = 40 }, "maximum replication factor 40 is above 16"},
		{"min W", func(g *Goal) { g.MinW = 4 }, "minimum W 4 exceeds the maximum replication factor 3"},
		{"negative W", func(g *Goal) { g.MinW = -1 }, "minimum W -1 is negative"},
		{"latency", func(g *Goal) { g.ReadP99 = -time.Millisecond }, "read p99 target -1ms is negative"},
	}
	for _, tt := range tests {
		g := DefaultGoal()
		tt.edit(&g)
		err := g.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v; want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidGoal)):
			t.Errorf("%s: Validate() = %v; want an ErrInvalidGoal naming %q", tt.name, err, tt.want)
		}
	}
	// Several problems are reported together.
	err := Goal{MaxStale: 2, MinRF: 0, MaxRF: -1}.Validate()
	if err == nil || strings.Count(err.Error(), ";") < 2 {
		t.Errorf("Validate() = %v; want every problem listed", err)
	}
}

func TestCandidates(t *testing.T) {
	tests := []struct {
		name    string
		g       Goal
		cluster int
		want    int
	}{
		// N=3: 3·3 (R,W) pairs with R<3 get three paths, R=3 one: 6·3 + 3 = 21.
		{"N=3 floor one", Goal{MinRF: 3, MaxRF: 3}, 0, 21},
		// W ≥ 2 drops W=1: R<3: 2·2·3 = 12, R=3: 2.
		{"N=3 W≥2", Goal{MinRF: 3, MaxRF: 3, MinW: 2}, 0, 14},
		// R+W>3: (1,3),(2,2),(2,3) ×3 paths, (3,1),(3,2),(3,3) ×1 = 12.
		{"N=3 floor quorum", Goal{MinRF: 3, MaxRF: 3, Floor: FloorQuorum}, 0, 12},
		// Sessions keep their guarantees at any R and W: as floor one.
		{"N=3 floor session", Goal{MinRF: 3, MaxRF: 3, Floor: FloorSession}, 0, 21},
		{"cluster caps N", Goal{MinRF: 3, MaxRF: 5}, 3, 21},
		{"cluster below minimum", Goal{MinRF: 3, MaxRF: 5}, 2, 0},
	}
	for _, tt := range tests {
		cs := Candidates(tt.g, tt.cluster)
		if len(cs) != tt.want {
			t.Errorf("%s: %d candidates; want %d", tt.name, len(cs), tt.want)
		}
		for _, c := range cs {
			if !tt.g.Allows(c, tt.cluster) {
				t.Errorf("%s: candidate %v not allowed", tt.name, c)
			}
		}
	}
}

func TestPolicyStringsAndJSON(t *testing.T) {
	tests := []struct {
		p    Policy
		want string
	}{
		{Policy{N: 3, R: 2, W: 2}, "quorum(N=3 R=2 W=2)"},
		{Policy{N: 3, R: 1, W: 1}, "one(N=3 R=1 W=1)"},
		{Policy{N: 3, R: 3, W: 3}, "all(N=3 R=3 W=3)"},
		{Policy{N: 3, R: 1, W: 2, Read: ReadNearest}, "custom(N=3 R=1 W=2 nearest)"},
		{Policy{N: 5, R: 1, W: 3, Read: ReadHedged}, "custom(N=5 R=1 W=3 hedged)"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q; want %q", got, tt.want)
		}
		b, err := json.Marshal(tt.p)
		if err != nil {
			t.Fatal(err)
		}
		var back Policy
		if err := json.Unmarshal(b, &back); err != nil || back != tt.p {
			t.Errorf("JSON %s decoded to %v, %v; want %v", b, back, err, tt.p)
		}
	}
	var rp ReadPath
	if err := rp.UnmarshalText([]byte("sideways")); err == nil {
		t.Errorf("UnmarshalText(sideways): err = nil")
	}
	if _, err := ReadPath(9).MarshalText(); err == nil {
		t.Errorf("MarshalText(9): err = nil")
	}
	var f Floor
	if err := json.Unmarshal([]byte(`"quorum"`), &f); err != nil || f != FloorQuorum {
		t.Errorf("floor %v, %v; want quorum", f, err)
	}
	if b, err := json.Marshal(FloorSession); err != nil || string(b) != `"session"` {
		t.Errorf("floor session encodes as %s, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`"session"`), &f); err != nil || f != FloorSession {
		t.Errorf("floor %v, %v; want session", f, err)
	}
	if err := json.Unmarshal([]byte(`"strong"`), &f); err == nil {
		t.Errorf("floor strong: err = nil")
	}
}

func TestModelValidate(t *testing.T) {
	if err := DefaultModel().Validate(); err != nil {
		t.Fatalf("DefaultModel().Validate() = %v", err)
	}
	m := DefaultModel()
	m.Trials, m.HedgeQuantile, m.MinGain = 0, 1, 1
	err := m.Validate()
	for _, want := range []string{"trials 0 is below 1", "hedge quantile 1 is outside (0, 1)", "minimum gain 1 is outside [0, 1)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to name %q", err, want)
		}
	}
}
