package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/adaptkv/adaptkv/bench"
)

// The echo service is the floor of the comparison: a bare gRPC unary call
// on loopback with no storage, no replication and no routing. Its one method
// answers a request carrying a key with a value of the configured size,
// the same bytes on the wire as an adaptkv Get, so that "YCSB C as a
// fraction of echo" measures what adaptkv adds to the RPC itself.
const (
	echoService = "adaptkv.bench.Echo"
	echoMethod  = "/" + echoService + "/Echo"
)

// echoServiceDesc is written by hand rather than generated, since the
// messages are protobuf's own wrappers and the service has one method.
func echoServiceDesc(value []byte) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: echoService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.BytesValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				// A request with a payload (an update) is echoed; a key
				// alone (a read) gets the value-sized answer.
				if len(in.Value) > len(value) {
					return in, nil
				}
				return &wrapperspb.BytesValue{Value: value}, nil
			},
		}},
		Streams:  []grpc.StreamDesc{},
		Metadata: "echo",
	}
}

// serveEcho serves the echo service on lis until ctx ends.
func serveEcho(ctx context.Context, lis net.Listener, valueSize int) error {
	s := grpc.NewServer()
	s.RegisterService(echoServiceDesc(make([]byte, valueSize)), struct{}{})
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	if err := s.Serve(lis); err != nil && ctx.Err() == nil {
		return fmt.Errorf("echo server: %w", err)
	}
	return nil
}

// echoServerMain is the body of the re-executed echo server child.
func echoServerMain(args []string) error {
	fs := flag.NewFlagSet(echoServerCmd, flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	valueSize := fs.Int("value-size", bench.DefaultValueSize, "bytes in each answer to a read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("echo server: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serveEcho(ctx, lis, *valueSize)
}

// echoStore calls the echo service over one gRPC connection, as the adaptkv
// SDK keeps one connection per node.
type echoStore struct {
	cc *grpc.ClientConn
}

func newEchoStore(addr string) (*echoStore, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("echo client: %w", err)
	}
	return &echoStore{cc: cc}, nil
}

func (s *echoStore) call(ctx context.Context, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.cc.Invoke(ctx, echoMethod, &wrapperspb.BytesValue{Value: payload}, new(wrapperspb.BytesValue))
}

// Read implements bench.Store: the key goes out, a value comes back.
func (s *echoStore) Read(ctx context.Context, key string) error {
	return s.call(ctx, []byte(key))
}

// Update implements bench.Store: key and value go out and come back.
func (s *echoStore) Update(ctx context.Context, key string, value []byte) error {
	return s.call(ctx, append([]byte(key), value...))
}

// Insert implements bench.Store.
func (s *echoStore) Insert(ctx context.Context, key string, value []byte) error {
	return s.Update(ctx, key, value)
}

// Scan implements bench.Store as a read.
func (s *echoStore) Scan(ctx context.Context, start string, _ int) error {
	return s.Read(ctx, start)
}

// Close implements bench.Store.
func (s *echoStore) Close() error { return s.cc.Close() }

var _ bench.Store = (*echoStore)(nil)
