package node

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/internal/security"
)

// certDir makes a certificate directory with a CA, a node certificate for
// 127.0.0.1, a root client certificate and a gossip key.
func certDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, err := range []error{
		security.CreateCA(dir, security.CreateOptions{}),
		security.CreateNode(dir, []string{"127.0.0.1"}, security.CreateOptions{}),
		security.CreateClient(dir, security.RootUser, security.CreateOptions{}),
		security.CreateGossipKey(dir, false),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loadMaterial(t *testing.T, dir, user string) *security.Material {
	t.Helper()
	var (
		m   *security.Material
		err error
	)
	if user == "" {
		m, err = security.LoadNode(dir)
	} else {
		m, err = security.LoadClient(dir, user)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The Raft stream layer of a secure node accepts node certificates of its
// CA only: a node certificate of another CA fails the handshake on both
// sides, and a client certificate of the right CA passes TLS but is never
// handed to Raft. Plaintext is refused too.
func TestRaftStreamLayerAcceptsOnlyNodes(t *testing.T) {
	certs, other := certDir(t), certDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newRaftStreamLayer(ln, net.Dialer{}, loadMaterial(t, certs, ""), slog.New(slog.DiscardHandler))
	defer srv.Close()
	addr := raft.ServerAddress(ln.Addr().String())

	got := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				close(got)
				return
			}
			got <- c
		}
	}()
	expectNothingAccepted := func(t *testing.T) {
		t.Helper()
		select {
		case c, ok := <-got:
			if ok {
				c.Close()
				t.Fatal("the layer handed a refused connection to Raft")
			}
		case <-time.After(300 * time.Millisecond):
		}
	}

	t.Run("node of the CA", func(t *testing.T) {
		d := newRaftStreamLayer(mustListen(t), net.Dialer{}, loadMaterial(t, certs, ""), slog.New(slog.DiscardHandler))
		defer d.Close()
		c, err := d.Dial(addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			defer s.Close()
			buf := make([]byte, 4)
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("read %q, %v", buf, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the node's connection was not accepted")
		}
	})
	t.Run("node of another CA", func(t *testing.T) {
		d := newRaftStreamLayer(mustListen(t), net.Dialer{}, loadMaterial(t, other, ""), slog.New(slog.DiscardHandler))
		defer d.Close()
		if c, err := d.Dial(addr, 5*time.Second); err == nil {
			c.Close()
			t.Fatal("dial with another CA's certificate succeeded")
		}
		expectNothingAccepted(t)
	})
	t.Run("client certificate", func(t *testing.T) {
		d := newRaftStreamLayer(mustListen(t), net.Dialer{}, loadMaterial(t, certs, security.RootUser), slog.New(slog.DiscardHandler))
		defer d.Close()
		c, err := d.Dial(addr, 5*time.Second)
		if err == nil {
			// TLS 1.3 finishes the client's side before the server has
			// checked the client's certificate: the refusal shows as a
			// closed connection.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte("ping"))
			if _, err = c.Read(make([]byte, 1)); err == nil {
				t.Fatal("a client certificate's connection stayed open")
			}
			c.Close()
		}
		expectNothingAccepted(t)
	})
	t.Run("plaintext", func(t *testing.T) {
		d := newRaftStreamLayer(mustListen(t), net.Dialer{}, nil, slog.New(slog.DiscardHandler))
		defer d.Close()
		c, err := d.Dial(addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte("plaintext raft rpc"))
		// The server may answer with a TLS alert, then must close.
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("plaintext connection not closed: %v", err)
		}
		expectNothingAccepted(t)
	})
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
