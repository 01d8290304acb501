package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Tracing exporters accepted by NewTracerProvider (`--trace`).
const (
	TraceOff    = ""
	TraceStdout = "stdout"
	TraceOTLP   = "otlp"
)

// ErrBadTraceExporter is returned for an exporter name NewTracerProvider
// does not know.
var ErrBadTraceExporter = errors.New("unknown trace exporter")

// TraceOptions configure NewTracerProvider.
type TraceOptions struct {
	// Exporter is TraceStdout (JSON spans, one per line, on Writer or
	// standard output) or TraceOTLP (OTLP over gRPC to Endpoint).
	Exporter string
	// Endpoint is the OTLP collector's host:port; empty means the
	// exporter's default (OTEL_EXPORTER_OTLP_ENDPOINT, else
	// localhost:4317). Plaintext unless OTEL_EXPORTER_OTLP_INSECURE=false.
	Endpoint string
	// SampleRatio is the share of new traces recorded, in (0, 1]; 0
	// means 1. A request that arrives with a sampled parent is always
	// recorded, so one trace follows a client request through every node.
	SampleRatio float64
	// Writer receives the stdout exporter's spans; nil means os.Stdout.
	Writer io.Writer
	// NodeID names the service instance in every span's resource.
	NodeID string
}

// NewTracerProvider builds the OpenTelemetry tracer provider a node's
// Config.TracerProvider takes from `--trace`. The caller shuts it down
// after the node stops, which flushes the spans not yet exported.
func NewTracerProvider(ctx context.Context, o TraceOptions) (*sdktrace.TracerProvider, error) {
	var exp sdktrace.SpanExporter
	var err error
	switch o.Exporter {
	case TraceStdout:
		w := o.Writer
		if w == nil {
			w = os.Stdout
		}
		exp, err = stdouttrace.New(stdouttrace.WithWriter(w))
	case TraceOTLP:
		var opts []otlptracegrpc.Option
		if o.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(o.Endpoint), otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("%w %q: use %q or %q", ErrBadTraceExporter, o.Exporter, TraceStdout, TraceOTLP)
	}
	if err != nil {
		return nil, fmt.Errorf("trace exporter %s: %w", o.Exporter, err)
	}
	ratio := o.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName("adaptkv"), semconv.ServiceInstanceID(o.NodeID))
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	), nil
}

// tracePropagator carries the trace context (W3C traceparent) in gRPC
// metadata, from the SDK to the coordinator and on to the replicas.
var tracePropagator = propagation.TraceContext{}

// serverTraceHandler is the gRPC server's span source: a span per call,
// child of the caller's when the call carries one.
func serverTraceHandler(tp trace.TracerProvider) stats.Handler {
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(tracePropagator))
}

// peerTraceOption makes the coordinator's fan-out to the replicas child
// spans of the request that caused it.
func peerTraceOption(tp trace.TracerProvider) grpc.DialOption {
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(tracePropagator)))
}
