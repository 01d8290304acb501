package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// Where the time goes: the CPU profiles that --profile takes of node n1 and
// of the client process during each adaptkv phase are read back (pprof's
// own parser) and every sample is put in one bucket by its stack. The
// innermost frame that belongs to a bucket decides, with two exceptions
// that look at the whole stack first: fsync anywhere below a frame is
// fsync, and a stack of the runtime alone (GC mark workers, the scheduler,
// idle spinning) is GC/runtime. Runtime frames never decide otherwise, so
// the allocation, memmove or goroutine wake-up a frame asks for counts
// with the code that asked: what a bucket would save if it did less.

// Buckets, in the order the table lists them.
const (
	bucketGRPCServer = "gRPC server"
	bucketGRPCClient = "gRPC client"
	bucketGRPCOther  = "gRPC (shared)"
	bucketHTTP2      = "HTTP/2 framing"
	bucketTLS        = "TLS and crypto"
	bucketProto      = "protobuf"
	bucketStorage    = "storage/pebble"
	bucketFsync      = "fsync"
	bucketSyscalls   = "other syscalls (network I/O)"
	bucketLogic      = "replication and node logic"
	bucketSDK        = "adaptkv SDK"
	bucketGenerator  = "workload generator"
	bucketRuntime    = "GC/runtime"
	bucketOther      = "other"
)

var bucketOrder = []string{bucketGRPCServer, bucketGRPCClient, bucketGRPCOther, bucketHTTP2, bucketTLS, bucketProto,
	bucketStorage, bucketFsync, bucketSyscalls, bucketLogic, bucketSDK, bucketGenerator, bucketRuntime, bucketOther}

// frameBucket is the bucket of one function by its name (package path
// and receiver included, as pprof records it), or "" for runtime frames
// and anything else that should defer to its caller.
func frameBucket(fn string) string {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(fn, s) {
				return true
			}
		}
		return false
	}
	switch {
	case strings.HasPrefix(fn, "syscall.") || strings.HasPrefix(fn, "internal/poll.") || strings.HasPrefix(fn, "golang.org/x/sys/unix.") ||
		strings.HasPrefix(fn, "net.") || strings.HasPrefix(fn, "os."):
		return bucketSyscalls
	case deferToCaller(fn):
		return ""
	case strings.HasPrefix(fn, "crypto/") || strings.HasPrefix(fn, "vendor/golang.org/x/crypto/") || strings.HasPrefix(fn, "golang.org/x/crypto/"):
		return bucketTLS
	case has("golang.org/x/net/http2", "google.golang.org/grpc/internal/transport", "bufio."):
		return bucketHTTP2
	case has("google.golang.org/protobuf/", "github.com/golang/protobuf/", "github.com/gogo/protobuf/", ".pb.", "pb.(*", "grpc/encoding/proto"):
		return bucketProto
	case has("google.golang.org/grpc"):
		switch {
		case has("(*Server)", "serverStream", "ServerStream", "handleStream", "processUnaryRPC", "processStreamingRPC", "serverHandler", "chainUnaryInterceptors", "chainStreamInterceptors"):
			return bucketGRPCServer
		case has("ClientConn", "clientStream", "ClientStream", "invoke", "csAttempt", "addrConn", "balancer", "picker", "resolver", "newClientStream"):
			return bucketGRPCClient
		}
		return bucketGRPCOther
	case has("github.com/cockroachdb/pebble", "github.com/adaptkv/adaptkv/storage"):
		return bucketStorage
	case has("github.com/adaptkv/adaptkv/client"):
		return bucketSDK
	case has("github.com/adaptkv/adaptkv/bench"), strings.HasPrefix(fn, "main."), strings.HasPrefix(fn, "math/rand"), has("hdrhistogram"):
		return bucketGenerator
	case has("github.com/adaptkv/adaptkv/"):
		return bucketLogic
	}
	return bucketOther
}

// callerPays are the packages whose cost belongs to the code that called
// them: the runtime, locks and atomics (whoever contends), and the
// general-purpose standard library (contexts, clocks, maps, reflection,
// errors, formatting).
var callerPays = []string{"runtime.", "runtime/", "internal/", "sync.", "sync/atomic.", "context.", "time.", "errors.",
	"reflect.", "sort.", "slices.", "maps.", "strings.", "bytes.", "strconv.", "fmt.", "unicode/", "encoding/binary.",
	"hash/", "math/bits.", "container/", "iter."}

// deferToCaller reports whether fn's samples go to its caller's bucket.
// Prefixes only: "internal/poll." and the like are matched before this
// is consulted for syscalls (frameBucket checks them first).
func deferToCaller(fn string) bool {
	for _, p := range callerPays {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// isFsync reports whether fn is a file sync.
func isFsync(fn string) bool {
	return strings.HasSuffix(fn, "syscall.Fsync") || strings.HasSuffix(fn, "syscall.Fdatasync") ||
		strings.HasSuffix(fn, "unix.Fdatasync") || strings.HasSuffix(fn, "unix.Fsync") || strings.HasSuffix(fn, "(*File).Sync")
}

// profileBreakdown is one profile's CPU time by bucket, with the functions
// that spent the most of it (flat) in each.
type profileBreakdown struct {
	total   int64
	samples int64
	buckets map[string]int64
	// top is each bucket's functions by flat time.
	top map[string]map[string]int64
}

// share is the bucket's fraction of the profile.
func (b *profileBreakdown) share(bucket string) float64 {
	if b == nil || b.total == 0 {
		return 0
	}
	return float64(b.buckets[bucket]) / float64(b.total)
}

// readBreakdown parses a CPU profile and sorts its samples into buckets.
func readBreakdown(path string) (*profileBreakdown, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	return breakdown(p), nil
}

// breakdown sorts p's samples into buckets by CPU time (the value whose
// type is "cpu", else the last).
func breakdown(p *profile.Profile) *profileBreakdown {
	vi := len(p.SampleType) - 1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	b := &profileBreakdown{buckets: map[string]int64{}, top: map[string]map[string]int64{}}
	for _, s := range p.Sample {
		if vi < 0 || vi >= len(s.Value) {
			continue
		}
		v := s.Value[vi]
		var names []string // innermost first
		for _, loc := range s.Location {
			// Inlined functions come innermost first within a location.
			for _, ln := range loc.Line {
				if ln.Function != nil {
					names = append(names, ln.Function.Name)
				}
			}
		}
		bucket := sampleBucket(names)
		b.total += v
		b.samples++
		b.buckets[bucket] += v
		if len(names) > 0 {
			if b.top[bucket] == nil {
				b.top[bucket] = map[string]int64{}
			}
			b.top[bucket][names[0]] += v
		}
	}
	return b
}

// sampleBucket is the bucket of one stack, innermost frame first.
func sampleBucket(names []string) string {
	for _, n := range names {
		if isFsync(n) {
			return bucketFsync
		}
	}
	for _, n := range names {
		if b := frameBucket(n); b != "" {
			return b
		}
	}
	return bucketRuntime
}

// topFuncs names the n functions with the most flat time in bucket, with
// their share of the whole profile.
func (b *profileBreakdown) topFuncs(bucket string, n int) string {
	type fv struct {
		fn string
		v  int64
	}
	var fs []fv
	for fn, v := range b.top[bucket] {
		fs = append(fs, fv{fn, v})
	}
	slices.SortFunc(fs, func(x, y fv) int { return cmp.Or(cmp.Compare(y.v, x.v), cmp.Compare(x.fn, y.fn)) })
	var out []string
	for _, f := range fs[:min(n, len(fs))] {
		out = append(out, fmt.Sprintf("`%s` %.1f%%", shortFunc(f.fn), 100*float64(f.v)/float64(b.total)))
	}
	return strings.Join(out, ", ")
}

// shortFunc drops the package path before the last slash.
func shortFunc(fn string) string {
	if i := strings.LastIndexByte(fn, '/'); i >= 0 {
		return fn[i+1:]
	}
	return fn
}

// writeProfiles writes, for the phases profiled with --profile, the share
// of node n1's and of the client's CPU in each bucket and what that share
// is in CPU microseconds per operation (of the servers' total, taking n1
// as typical of the three nodes; of the client process), then the top
// functions of each bucket in the first profiled phase.
func (c *comparison) writeProfiles(w io.Writer) {
	type col struct {
		name       string
		node, cli  *profileBreakdown
		srvUS, cUS float64
	}
	var cols []col
	for i := range c.results {
		p := &c.results[i]
		if p.NodeProfile == "" && p.ClientProfile == "" {
			continue
		}
		cl := col{name: strings.ToUpper(p.Workload) + " " + p.Setting}
		if p.TLS && len(c.o.tls) > 1 {
			cl.name += " tls"
		}
		if p.Point != "" {
			cl.name += " " + p.Point
		}
		cl.srvUS, cl.cUS = p.perOp()
		var err error
		if p.NodeProfile != "" {
			if cl.node, err = readBreakdown(p.NodeProfile); err != nil {
				c.notes = append(c.notes, err.Error())
			}
		}
		if p.ClientProfile != "" {
			if cl.cli, err = readBreakdown(p.ClientProfile); err != nil {
				c.notes = append(c.notes, err.Error())
			}
		}
		cols = append(cols, cl)
	}
	if len(cols) == 0 {
		return
	}
	for _, side := range []string{"node n1", "client process"} {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Where the time goes, %s (share of its CPU profile, and µs per operation of the %s CPU above):\n\n", side,
			map[string]string{"node n1": "servers'", "client process": "client's"}[side])
		fmt.Fprint(w, "| bucket |")
		for _, cl := range cols {
			fmt.Fprintf(w, " %s |", cl.name)
		}
		fmt.Fprintln(w, " top functions (flat, first phase) |")
		fmt.Fprint(w, "|---|")
		for range cols {
			fmt.Fprint(w, "---:|")
		}
		fmt.Fprintln(w, "---|")
		fmt.Fprint(w, "| (samples) |")
		for _, cl := range cols {
			b := cl.node
			if side != "node n1" {
				b = cl.cli
			}
			n := int64(0)
			if b != nil {
				n = b.samples
			}
			fmt.Fprintf(w, " %d |", n)
		}
		fmt.Fprintln(w, " |")
		for _, bucket := range bucketOrder {
			var cells []string
			seen := false
			var first *profileBreakdown
			for _, cl := range cols {
				b, perOp := cl.node, cl.srvUS
				if side != "node n1" {
					b, perOp = cl.cli, cl.cUS
				}
				if first == nil && b != nil {
					first = b
				}
				sh := b.share(bucket)
				if sh <= 0 {
					cells = append(cells, "–")
					continue
				}
				seen = true
				cell := fmt.Sprintf("%.1f%%", 100*sh)
				if perOp > 0 {
					cell += fmt.Sprintf(" (%.0f)", sh*perOp)
				}
				cells = append(cells, cell)
			}
			if !seen {
				continue
			}
			top := ""
			if first != nil {
				top = first.topFuncs(bucket, 3)
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", bucket, strings.Join(cells, " | "), top)
		}
	}
}
