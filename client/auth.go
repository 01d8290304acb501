package client

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// tokenSource logs in with Config.User and Config.Password and hands the
// token to every call as per-call credentials (gRPC's
// PerRPCCredentials). It logs in on the first call, again when the token
// has run four fifths of its life, and again once after a call is refused
// as unauthenticated (invoke).
type tokenSource struct {
	c *Client

	mu      sync.Mutex
	token   string
	refresh time.Time // log in again from then on
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t *tokenSource) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if ri, ok := credentials.RequestInfoFromContext(ctx); ok && ri.Method == kvpb.Admin_Login_FullMethodName {
		return nil, nil
	}
	tok, err := t.get(ctx)
	if err != nil {
		// A status error (UNAUTHENTICATED for a wrong password) reaches
		// the caller as it is.
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a
// token is never sent in plaintext.
func (t *tokenSource) RequireTransportSecurity() bool { return true }

func (t *tokenSource) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && time.Now().Before(t.refresh) {
		return t.token, nil
	}
	tok, exp, err := t.c.login(ctx)
	if err != nil {
		t.token = ""
		return "", err
	}
	now := time.Now()
	t.token, t.refresh = tok, now.Add(exp.Sub(now)*4/5)
	return tok, nil
}

// refreshAt is when the token in hand is due to be replaced (zero when
// there is none): a Batch stream opened with it is retired then, since the
// stream keeps the token it was opened with.
func (t *tokenSource) refreshAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == "" {
		return time.Time{}
	}
	return t.refresh
}

// invalidate forgets the token after a refusal, and reports whether there
// was one: only then is logging in again worth a retry.
func (t *tokenSource) invalidate() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	had := t.token != ""
	t.token = ""
	return had
}

// loginOp is the op of login calls, which run under the tokenSource's
// lock: invoke must not log in again when one of them is refused.
const loginOp = "login"

// login exchanges the configured password for a token.
func (c *Client) login(ctx context.Context) (string, time.Time, error) {
	const op = loginOp
	var resp *kvpb.LoginResponse
	req := &kvpb.LoginRequest{User: c.cfg.User, Password: c.cfg.Password}
	err := c.invoke(ctx, opRead, op, c.pickFrom(op, c.anyNode), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).Login(ctx, req, co...)
		return err
	})
	var e *Error
	if errors.As(err, &e) {
		return "", time.Time{}, e.GRPCStatus().Err()
	} else if err != nil {
		return "", time.Time{}, err
	}
	return resp.GetToken(), time.UnixMilli(resp.GetExpiresUnixMs()), nil
}
