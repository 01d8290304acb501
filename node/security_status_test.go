package node_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// A node says in ClusterStatus whether it is secure and when its
// certificates expire, exports the time left as adaptkv_cert_expiry_seconds
// (absent when insecure), and serves pprof only with Config.Pprof.
func TestSecurityStatusMetricAndPprof(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secure bool
		pprof  bool
	}{
		{"secure", true, false},
		{"insecure with pprof", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var certs string
			if tc.secure {
				certs = testCerts(t)
			}
			c := clustertest.New(t, 1, func(o *clustertest.Options) {
				o.CertsDir = certs
				o.Configure = func(i int, cfg *node.Config) { cfg.Pprof = tc.pprof }
			})
			ctx := ctxT(t, 20*time.Second)
			st, err := c.Client(t).ClusterStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Security.Secure != tc.secure {
				t.Fatalf("status security %+v; want secure=%v", st.Security, tc.secure)
			}
			if tc.secure {
				m, err := security.LoadNode(certs)
				if err != nil {
					t.Fatal(err)
				}
				if !st.Security.CertNotAfter.Equal(m.NotAfter().Truncate(time.Second)) || !st.Security.CANotAfter.Equal(m.CANotAfter().Truncate(time.Second)) {
					t.Errorf("status expiry %+v; want node %v, CA %v", st.Security, m.NotAfter(), m.CANotAfter())
				}
			}
			httpAddr := c.Node(0).Addrs().HTTP
			metrics := securityHTTPGet(t, "http://"+httpAddr+"/metrics", http.StatusOK)
			for _, kind := range []string{"node", "ca"} {
				has := strings.Contains(metrics, `adaptkv_cert_expiry_seconds{kind="`+kind+`"} `)
				if has != tc.secure {
					t.Errorf("metric for kind %s present: %v; want %v", kind, has, tc.secure)
				}
			}
			want := http.StatusNotFound
			if tc.pprof {
				want = http.StatusOK
			}
			securityHTTPGet(t, "http://"+httpAddr+"/debug/pprof/", want)
		})
	}
}

func securityHTTPGet(t *testing.T, url string, want int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %s; want %d", url, resp.Status, want)
	}
	return string(b)
}
