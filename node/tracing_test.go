package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// A traced client's quorum read is one trace: the client's span, the
// coordinator's server span under it, the coordinator's calls to the other
// replicas under that, and their server spans under those.
func TestTracingFollowsTheFanOut(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) { cfg.TracerProvider = tp }
	})
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.Client(t).Put(ctx, []byte("traced"), []byte("v")); err != nil {
		t.Fatal(err)
	}

	clientTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer clientTP.Shutdown(context.Background())
	cc, err := grpc.NewClient(c.Endpoints()[0], grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(clientTP), otelgrpc.WithPropagators(propagation.TraceContext{}))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	exp.Reset()
	if _, err := kvpb.NewKVClient(cc).Get(ctx, &kvpb.GetRequest{Keyspace: "default", Key: []byte("traced"), Consistency: &kvpb.Consistency{Level: kvpb.Level_LEVEL_ALL}}); err != nil {
		t.Fatal(err)
	}

	// The replicas' server spans end after the coordinator answered at the
	// latest when the replica timeout passes; wait for them.
	var spans tracetest.SpanStubs
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans = exp.GetSpans()
		if err := checkFanOut(spans); err == nil {
			return
		} else if time.Now().After(deadline) {
			for _, s := range spans {
				t.Logf("span %s kind=%v trace=%s parent=%s", s.Name, s.SpanKind, s.SpanContext.TraceID(), s.Parent.SpanID())
			}
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkFanOut(spans tracetest.SpanStubs) error {
	var root *tracetest.SpanStub
	for i := range spans {
		if spans[i].Name == "adaptkv.v1.KV/Get" && spans[i].SpanKind == trace.SpanKindClient {
			root = &spans[i]
		}
	}
	if root == nil {
		return errors.New("no client span of KV/Get")
	}
	byParent := map[trace.SpanID][]tracetest.SpanStub{}
	for _, s := range spans {
		if s.SpanContext.TraceID() == root.SpanContext.TraceID() {
			byParent[s.Parent.SpanID()] = append(byParent[s.Parent.SpanID()], s)
		}
	}
	var server *tracetest.SpanStub
	for _, s := range byParent[root.SpanContext.SpanID()] {
		if s.Name == "adaptkv.v1.KV/Get" && s.SpanKind == trace.SpanKindServer {
			server = &s
		}
	}
	if server == nil {
		return errors.New("the coordinator's server span is not a child of the client's")
	}
	peerServers := 0
	for _, s := range byParent[server.SpanContext.SpanID()] {
		if s.Name != "adaptkv.v1.Peer/Read" || s.SpanKind != trace.SpanKindClient {
			continue
		}
		for _, r := range byParent[s.SpanContext.SpanID()] {
			if r.Name == "adaptkv.v1.Peer/Read" && r.SpanKind == trace.SpanKindServer {
				peerServers++
			}
		}
	}
	if peerServers < 2 {
		return errors.New("fewer than two replicas' Peer/Read server spans under the coordinator's calls")
	}
	return nil
}
