package overload

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/bench"
)

func TestRecoverySeconds(t *testing.T) {
	point := func(s float64, p99 float64) bench.OpenPoint { return bench.OpenPoint{Elapsed: s, Ops: 1, P99: p99} }
	// The overload ends at 3 s; ticks of 1 s end at 1, 2, ...
	tl := []bench.OpenPoint{point(1, 5), point(2, 500), point(3, 500), point(4, 400), point(5, 8), point(6, 30), point(7, 9), point(8, 9), point(9, 9)}
	tests := []struct {
		name  string
		tl    []bench.OpenPoint
		limit float64
		want  float64
	}{
		{"back after a blip", tl, 10, 3}, // the ticks ending at 7, 8 and 9 s are the first three good in a row
		{"back at once", tl, 1000, 0},    // the tick starting at 3 s is fine
		{"never", tl[:7], 10, -1},        // no three good ticks in a row
		{"an empty tick does not count", []bench.OpenPoint{{Elapsed: 4}, point(5, 1), point(6, 1), point(7, 1)}, 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := recoverySeconds(tt.tl, 3*time.Second, tt.limit, 3); got != tt.want {
				t.Errorf("recoverySeconds = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestProcReaders(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	rss, hwm, err := memory(os.Getpid())
	if err != nil || rss <= 0 || hwm < rss {
		t.Errorf("memory(self) = %d, %d, %v; want 0 < rss <= hwm", rss, hwm, err)
	}
	busy := time.Now()
	for time.Since(busy) < 50*time.Millisecond {
	}
	if s, err := cpuSeconds(strconv.Itoa(os.Getpid())); err != nil || s <= 0 {
		t.Errorf("cpuSeconds(self) = %v, %v; want the CPU this test used", s, err)
	}
}
