package client

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const base, maxWait = 50 * time.Millisecond, time.Second
	for attempt := 0; attempt < 64; attempt++ {
		d := base << min(attempt, 20)
		d = min(d, maxWait)
		lo, hi := backoff(attempt, base, maxWait, 0), backoff(attempt, base, maxWait, 0.9999999)
		if lo != d/2 {
			t.Errorf("attempt %d: lower bound %v, want %v", attempt, lo, d/2)
		}
		if hi > d || hi < d-time.Microsecond {
			t.Errorf("attempt %d: upper bound %v, want just under %v", attempt, hi, d)
		}
	}
	if got := backoff(0, base, maxWait, 0.5); got != 37500*time.Microsecond {
		t.Errorf("backoff(0, r=0.5) = %v, want 37.5ms", got)
	}
	// The cap holds however many attempts were made.
	if got := backoff(1000, base, maxWait, 0.9999); got > maxWait {
		t.Errorf("backoff(1000) = %v exceeds the cap", got)
	}
	// Jitter: random draws spread over [d/2, d].
	seen := make(map[time.Duration]bool)
	for range 1000 {
		d := backoff(3, base, maxWait, rand.Float64())
		if d < 200*time.Millisecond || d > 400*time.Millisecond {
			t.Fatalf("backoff(3) = %v, outside [200ms, 400ms]", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct waits in 1000 draws: no jitter", len(seen))
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    error
		inError string
	}{
		{name: "no endpoints", cfg: Config{}, want: ErrNoEndpoints, inError: "Config.Endpoints"},
		{name: "missing port", cfg: Config{Endpoints: []string{"localhost"}}, want: ErrInvalidArgument, inError: `"localhost"`},
		{name: "missing host", cfg: Config{Endpoints: []string{"a:1", ":7400"}}, want: ErrInvalidArgument, inError: "Endpoints[1]"},
		{name: "negative dial timeout", cfg: Config{Endpoints: []string{"a:1"}, DialTimeout: -1}, want: ErrInvalidArgument, inError: "DialTimeout"},
		{name: "base above max", cfg: Config{Endpoints: []string{"a:1"}, RetryBackoffBase: time.Second, RetryBackoffMax: time.Millisecond},
			want: ErrInvalidArgument, inError: "RetryBackoffBase"},
		{name: "hedge budget above 1", cfg: Config{Endpoints: []string{"a:1"}, HedgeBudget: 1.5}, want: ErrInvalidArgument, inError: "HedgeBudget"},
		{name: "negative hedge budget", cfg: Config{Endpoints: []string{"a:1"}, HedgeBudget: -0.1}, want: ErrInvalidArgument, inError: "HedgeBudget"},
		{name: "negative hedge delay", cfg: Config{Endpoints: []string{"a:1"}, HedgeDelay: -1}, want: ErrInvalidArgument, inError: "HedgeDelay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.withDefaults()
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.inError) {
				t.Errorf("err = %v, want %v naming %s", err, tt.want, tt.inError)
			}
			if !strings.HasPrefix(err.Error(), "client: ") {
				t.Errorf("err = %q lacks the package prefix", err)
			}
			if _, err := New(t.Context(), tt.cfg); !errors.Is(err, tt.want) {
				t.Errorf("New: err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Endpoints: []string{"a:1", "b:2", "a:1"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Endpoints) != 2 {
		t.Errorf("endpoints not deduplicated: %v", cfg.Endpoints)
	}
	if cfg.DialTimeout != DefaultDialTimeout || cfg.RequestTimeout != DefaultRequestTimeout ||
		cfg.MaxRetries != DefaultMaxRetries || cfg.RetryBackoffBase != DefaultRetryBackoffBase ||
		cfg.RetryBackoffMax != DefaultRetryBackoffMax || cfg.TopologyRefresh != DefaultTopologyRefresh ||
		cfg.HedgeBudget != DefaultHedgeBudget || cfg.DisableHedging || cfg.Logger == nil {
		t.Errorf("defaults not applied: %+v", cfg)
	}

	cfg, err = Config{Endpoints: []string{"a:1"}, MaxRetries: -1, RetryBackoffBase: 2 * time.Second}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxRetries != 0 {
		t.Errorf("MaxRetries -1 gave %d, want 0 (no retries)", cfg.MaxRetries)
	}
	if cfg.RetryBackoffMax != 2*time.Second {
		t.Errorf("RetryBackoffMax = %v, want raised to the base", cfg.RetryBackoffMax)
	}
}
