package node_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// statusSecret is a value the status-page tests write; it must never show
// on the page, which is served in plaintext.
const statusSecret = "status-page-secret-value"

// probedRE finds a decision with staleness observed by probes.
var probedRE = regexp.MustCompile(`"observed":\{[^}]*"probed":[1-9]`)

// startStatusCluster starts a 3-node cluster with a fast tuner, an adaptive
// keyspace and enough traffic that the tuner has recorded a few decisions,
// with staleness observed by probes beside the predicted if it comes soon
// (bounded: at most 20 s of load).
func startStatusCluster(t *testing.T) *clustertest.Cluster {
	t.Helper()
	c := clustertest.New(t, 3, fastTuner, func(o *clustertest.Options) {
		tune := o.Configure
		o.Configure = func(i int, cfg *node.Config) {
			tune(i, cfg)
			cfg.Zone = fmt.Sprintf("zone-%c", 'a'+i)
		}
	})
	kv := c.Client(t)
	ctx := ctxT(t, 60*time.Second)
	if _, err := kv.CreateKeyspace(ctx, "adapt", client.KeyspaceSpec{ReplicationFactor: 3, Adaptive: &client.AdaptiveGoal{MaxStale: 0.001}}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, []byte("k0"), []byte(statusSecret)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	// Probes measure staleness only while a partial quorum is in force,
	// which the tuner may not choose on loopback; wait a little for one.
	enough := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		key := []byte(fmt.Sprintf("k%d", i%50))
		if i%10 == 0 {
			if _, err := kv.Put(ctx, key, []byte(statusSecret), client.WithKeyspace("adapt")); err != nil {
				t.Fatal(err)
			}
		} else if _, err := kv.Get(ctx, key, client.WithKeyspace("adapt")); err != nil {
			t.Fatal(err)
		}
		if i%200 == 199 {
			ex, err := kv.TunerExplain(ctx, "adapt", 30)
			if err != nil {
				t.Fatal(err)
			}
			observed := 0
			for _, e := range ex {
				if probedRE.MatchString(e.JSON) {
					observed++
				}
			}
			if len(ex) >= 4 && (observed >= 1 || time.Now().After(enough)) {
				break
			}
		}
	}
	return c
}

func getPage(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// The status page of a node of a running cluster shows its members, the
// ring, the keyspaces, the tuner's decisions with predicted beside observed
// staleness, the flagged nodes (none) and the background work, and no
// data value.
func TestStatusPage(t *testing.T) {
	t.Parallel()
	c := startStatusCluster(t)
	base := "http://" + c.Node(1).Addrs().HTTP
	resp, page := getPage(t, http.MethodGet, base+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d: %s", resp.StatusCode, page)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q; want text/html", ct)
	}
	want := []string{
		`<meta http-equiv="refresh" content="5">`,
		`id="node-id">n2<`,
		`class="badge insecure" id="security">INSECURE<`,
		`id="ring-bar"`,
		`data-name="default"`, `data-name="adapt"`, `adaptive: stale ≤ 0.1%`,
		`class="stale-chart"`, `<polyline`, `class="decision"`,
		`id="none-flagged">No node is flagged.<`,
		`id="hints-pending">`,
		`never keys or values`,
	}
	for i := range c.Len() {
		id := c.ID(i)
		want = append(want, fmt.Sprintf(`class="member" data-id="%s"`, id), "<title>"+id+": ", fmt.Sprintf("<td>zone-%c</td>", 'a'+i))
	}
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	if n := strings.Count(page, `<span class="badge st-alive">alive</span>`); n != 3 {
		t.Errorf("%d members shown alive; want 3", n)
	}
	if n := strings.Count(page, `<span class="badge st-normal">normal</span>`); n != 3 {
		t.Errorf("%d members shown normal on the ring; want 3", n)
	}
	// The chart draws the predicted stale rate (the observed one only
	// with probes: TestStatusPageDecisions).
	if !strings.Contains(page, `<polyline points="`) || !strings.Contains(page, `stroke="#4e79a7"`) {
		t.Errorf("the stale-read chart lacks the predicted line")
	}
	for _, bad := range []string{statusSecret, "ZgotmplZ"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}

	// Only "/" is the page; other paths stay not found, and it answers
	// GET and HEAD only.
	if resp, _ := getPage(t, http.MethodGet, base+"/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope = %d; want 404", resp.StatusCode)
	}
	if resp, _ := getPage(t, http.MethodPost, base+"/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d; want 405", resp.StatusCode)
	}
	if resp, _ := getPage(t, http.MethodGet, base+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz = %d; want 200", resp.StatusCode)
	}
}

// A secure node's page says so and gives its certificates' expiry.
func TestStatusPageSecure(t *testing.T) {
	t.Parallel()
	certs := testCerts(t)
	c := clustertest.New(t, 1, func(o *clustertest.Options) { o.CertsDir = certs })
	m, err := security.LoadNode(certs)
	if err != nil {
		t.Fatal(err)
	}
	resp, page := getPage(t, http.MethodGet, "http://"+c.Node(0).Addrs().HTTP+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d: %s", resp.StatusCode, page)
	}
	for _, w := range []string{
		`class="badge secure" id="security">secure (mTLS)<`,
		"certificate valid until " + m.NotAfter().UTC().Format("2006-01-02 15:04:05 UTC"),
		"CA until " + m.CANotAfter().UTC().Format("2006-01-02 15:04:05 UTC"),
	} {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	if strings.Contains(page, "INSECURE") {
		t.Errorf("a secure node's page says INSECURE")
	}
}
