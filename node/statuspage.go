package node

// The status page: a server-rendered HTML page on the node's HTTP address
// at "/", for people. Everything on it comes from this node's own state
// (the metadata log it has applied, its gossip view, its hint store, its
// repair runner and scheduler): a page load sends nothing to other nodes,
// so a busy or partitioned cluster is not loaded further by people looking
// at it, and each node's page is that node's view (which is the point when
// views disagree). The HTTP address is plaintext and unauthenticated, so
// the page shows cluster state only: never keys or values.

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/tuner"
)

//go:embed statuspage.html
var statusPageHTML string

// statusPageRefresh is how often the page reloads itself.
const statusPageRefresh = 5 * time.Second

// statusPageDecisions is how many of each adaptive keyspace's recent
// decisions the page lists, and statusPageChartPoints how many it charts
// (the log keeps maxDecisions).
const (
	statusPageDecisions   = 8
	statusPageChartPoints = 30
)

var statusPageTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"pct":  func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"prob": formatProb,
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
	"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"ms":    func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) },
	"bytes": formatBytes,
}).Parse(statusPageHTML))

// statusPage is what the template renders.
type statusPage struct {
	Now            time.Time
	RefreshSeconds int
	NodeID         string
	MetadataLeader string
	MetadataIndex  uint64
	TopologyEpoch  uint64
	Vnodes         int
	Security       pageSecurity
	Members        []pageMember
	Ring           []ringSegment // the stacked ownership bar
	Keyspaces      []pageKeyspace
	HintsPending   int
	HintsDelivered uint64
	Stream         *pageStream
	Repairs        []pageRepair
	// Flagged are the nodes the gray-failure health model demoted, as the
	// metadata log has them (node/health.go).
	Flagged []FlaggedNode
}

// FlaggedNode is a node the gray-failure health model has demoted, with the
// evidence for it.
type FlaggedNode struct {
	ID       string
	Since    time.Time
	Evidence string
}

type pageSecurity struct {
	Secure       bool
	CertNotAfter time.Time
	CANotAfter   time.Time
	CertLeft     string // "364 days", "expired"
	CertSoon     bool   // less than 30 days left
}

type pageMember struct {
	ID, Zone                          string
	Number                            uint32
	State                             string // gossip: alive, dead, left
	Since                             time.Time
	RingState                         string // metadata log: joining, normal, leaving, left
	RaftRole                          string
	GRPCAddr, GossipAddr, HTTPAddr    string
	Ownership                         float64
	OwnershipWidth                    float64 // px of the table's bar
	HintsFor                          int
	Self                              bool
	Color                             string
	StateClass, RingClass, LinkToPage string
}

type ringSegment struct {
	ID, Color string
	X, Width  float64
	Share     float64
}

type pageKeyspace struct {
	Name        string
	N, R, W     int
	PendingN    int
	Level       string
	Epoch       uint64
	ReadPath    string
	Adaptive    bool
	Goal        string
	Decisions   []pageDecision
	Chart       *staleChart
	UpdatedUnix time.Time
}

type pageDecision struct {
	At          time.Time
	From, To    string
	Changed     bool
	Reason      string
	Predicted   string // calibrated stale-read probability of To
	Observed    string // measured under To, "" before the next decision
	Probed      uint64
	Explanation string
}

type pageStream struct {
	Change, Driver, Keyspace string
	Live                     bool
	KeyspacesDone, Keyspaces uint32
	SourcesDone, Sources     uint32
	Done                     float64
	BarWidth                 float64
	BytesScanned             uint64
	BytesPushed              uint64
	RecordsPushed            uint64
}

type pageRepair struct {
	Keyspace string
	Running  bool   // a part of a pass runs on this node
	Parts    int    // parts running here
	Next     string // the scheduled pass's next start, on the metadata leader
}

// statusPage serves the page.
func (n *Node) statusPage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the status page answers GET", http.StatusMethodNotAllowed)
		return
	}
	var b bytes.Buffer
	if err := statusPageTmpl.Execute(&b, n.statusPageData(time.Now())); err != nil {
		n.log.Error("status page", "err", err)
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The page runs no script and loads nothing from elsewhere.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = b.WriteTo(w)
}

// memberPalette colours the members consistently across the page.
var memberPalette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

// statusPageData gathers the page from this node's state.
func (n *Node) statusPageData(now time.Time) statusPage {
	_, leader := n.raft.LeaderWithID()
	topo := n.meta.Topology()
	rg := topology{n}.Ring()
	own := rg.Ownership()
	roles := n.raftRoles()
	p := statusPage{
		Now: now, RefreshSeconds: int(statusPageRefresh / time.Second),
		NodeID: n.cfg.ID, MetadataLeader: string(leader), MetadataIndex: n.meta.applied.Load(),
		TopologyEpoch: topo.Epoch, Vnodes: rg.Vnodes(),
		HintsPending: n.hints.Pending(), HintsDelivered: n.hints.Delivered(),
	}
	if m := n.cfg.Security; m != nil {
		left := m.NotAfter().Sub(now)
		p.Security = pageSecurity{Secure: true, CertNotAfter: m.NotAfter(), CANotAfter: m.CANotAfter(),
			CertLeft: timeLeft(left), CertSoon: left < 30*24*time.Hour}
	}
	x := 0.0
	for i, m := range n.members.View().Members {
		pm := pageMember{
			ID: m.ID, Zone: m.Zone, Number: n.memberNumber(m.ID), State: m.State.String(), Since: m.Since,
			RingState: string(ringStateOf(topo, m.ID)), RaftRole: roles[m.ID],
			GRPCAddr: m.GRPCAddr, GossipAddr: m.GossipAddr, HTTPAddr: m.HTTPAddr,
			Ownership: own[m.ID], OwnershipWidth: math.Round(own[m.ID]*1200) / 10,
			HintsFor: n.hints.PendingFor(m.ID), Self: m.ID == n.cfg.ID,
			Color: memberPalette[i%len(memberPalette)],
		}
		pm.StateClass = "st-" + pm.State
		pm.RingClass = "st-" + pm.RingState
		if !pm.Self && linkable(pm.HTTPAddr) {
			pm.LinkToPage = "http://" + pm.HTTPAddr + "/"
		}
		p.Members = append(p.Members, pm)
		if pm.Ownership > 0 {
			w := pm.Ownership * 1000
			p.Ring = append(p.Ring, ringSegment{ID: m.ID, Color: pm.Color, X: math.Round(x*10) / 10, Width: math.Round(w*10) / 10, Share: pm.Ownership})
			x += w
		}
	}
	for _, d := range n.meta.Defs() {
		p.Keyspaces = append(p.Keyspaces, n.pageKeyspace(d))
	}
	if st := n.streamStatus(); st != nil {
		ps := &pageStream{Change: st.GetChange(), Driver: st.GetDriver(), Keyspace: st.GetKeyspace(), Live: st.GetLive(),
			KeyspacesDone: st.GetKeyspacesDone(), Keyspaces: st.GetKeyspacesTotal(),
			SourcesDone: st.GetSourcesDone(), Sources: st.GetSourcesTotal(),
			BytesScanned: st.GetBytesScanned(), BytesPushed: st.GetBytesPushed(), RecordsPushed: st.GetRecordsPushed()}
		if ps.Sources > 0 {
			ps.Done = float64(ps.SourcesDone) / float64(ps.Sources)
		}
		ps.BarWidth = math.Round(ps.Done*3000) / 10
		p.Stream = ps
	}
	p.Repairs = n.pageRepairs(now)
	p.Flagged = flaggedNodes(n.meta.health.Load())
	return p
}

// flaggedNodes lists the nodes the metadata log has flagged, by ID, with
// the decision's reason as the evidence.
func flaggedNodes(st *healthState) []FlaggedNode {
	if st == nil {
		return nil
	}
	out := make([]FlaggedNode, 0, len(st.Flagged))
	for id, d := range st.Flagged {
		out = append(out, FlaggedNode{ID: id, Since: d.At, Evidence: d.Reason})
	}
	slices.SortFunc(out, func(a, b FlaggedNode) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (n *Node) pageKeyspace(d KeyspaceDef) pageKeyspace {
	k := pageKeyspace{Name: d.Name, N: d.ReplicationFactor, PendingN: d.PendingN, Level: d.Level, Epoch: d.Epoch,
		R: d.R, W: d.W, Adaptive: d.Adaptive != nil, UpdatedUnix: time.UnixMilli(d.UpdatedUnixMs)}
	if lv, err := parseLevel(d.Level); err == nil {
		if pol, err := quorum.Resolve(lv, d.ReplicationFactor, d.R, d.W); err == nil {
			k.R, k.W = pol.R, pol.W
		}
	}
	switch {
	case d.ReadAll:
		k.ReadPath = "all replicas"
	case d.HedgeAfterNs > 0:
		k.ReadPath = "nearest, hedged after " + time.Duration(d.HedgeAfterNs).String()
	default:
		k.ReadPath = "nearest"
	}
	if d.Adaptive == nil {
		return k
	}
	g := d.Adaptive
	goal := fmt.Sprintf("stale ≤ %s, floor %v, N %d..%d, W ≥ %d", formatProb(g.MaxStale), g.Floor, g.MinRF, g.MaxRF, max(g.MinW, 1))
	if g.ReadP99 > 0 {
		goal += ", read p99 ≤ " + g.ReadP99.String()
	}
	if g.WriteP99 > 0 {
		goal += ", write p99 ≤ " + g.WriteP99.String()
	}
	k.Goal = goal
	raw := n.meta.Decisions(d.Name)
	raw = raw[max(0, len(raw)-statusPageChartPoints):]
	var pts []chartPoint
	for i, b := range raw {
		var dec tuner.Decision
		if json.Unmarshal(b, &dec) != nil {
			continue
		}
		pd := pageDecision{At: dec.At, From: dec.From.String(), To: dec.To.String(), Changed: dec.Changed,
			Reason: string(dec.Reason), Explanation: dec.Explanation}
		pt := chartPoint{Predicted: math.NaN(), Observed: math.NaN()}
		if c := cmpOr(dec.Chosen, dec.Current); c != nil {
			pd.Predicted, pt.Predicted = formatProb(c.StaleProb), c.StaleProb
		}
		if o := dec.Observed; o != nil && o.Probed > 0 {
			pd.Observed, pd.Probed, pt.Observed = formatProb(o.StaleRate), o.Probed, o.StaleRate
		}
		if i >= len(raw)-statusPageDecisions {
			k.Decisions = append(k.Decisions, pd)
		}
		pts = append(pts, pt)
	}
	slices.Reverse(k.Decisions) // newest first in the table; the chart runs left to right
	if len(pts) > 0 {
		k.Chart = newStaleChart(pts, g.MaxStale)
	}
	return k
}

// linkable reports whether a member's HTTP address can be linked to from
// another machine: not one bound to every interface (":8080", "0.0.0.0:…").
func linkable(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsUnspecified()
}

func cmpOr(a, b *tuner.CandidateReport) *tuner.CandidateReport {
	if a != nil {
		return a
	}
	return b
}

func (n *Node) pageRepairs(now time.Time) []pageRepair {
	running := n.repair.Running()
	leading := n.MetadataLeader() == n.cfg.ID
	n.scheduler.mu.Lock()
	next := make(map[string]time.Time, len(n.scheduler.next))
	// A former leader's schedule stays behind until it leads again.
	for k, v := range n.scheduler.next {
		if leading && n.scheduler.term != 0 {
			next[k] = v
		}
	}
	for k := range n.scheduler.running {
		running[k] = max(running[k], 1)
	}
	n.scheduler.mu.Unlock()
	names := map[string]bool{}
	for k := range running {
		names[k] = true
	}
	for k := range next {
		names[k] = true
	}
	var out []pageRepair
	for k := range names {
		r := pageRepair{Keyspace: k, Running: running[k] > 0, Parts: running[k]}
		if t, ok := next[k]; ok {
			r.Next = "in " + t.Sub(now).Round(time.Second).String()
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Keyspace < out[j].Keyspace })
	return out
}

// chartPoint is one decision's stale-read figures; NaN where absent.
type chartPoint struct{ Predicted, Observed float64 }

// staleChart is an SVG line chart of predicted beside observed stale-read
// rates over a keyspace's recent decisions, with the goal as a line. The
// coordinates are computed here so that the template only places them.
type staleChart struct {
	Width, Height       int
	Predicted, Observed string // polyline points
	PredictedDots       []chartDot
	ObservedDots        []chartDot
	GoalY               float64
	Top                 string // the y axis' top label
	Goal                string
}

type chartDot struct{ X, Y float64 }

const (
	chartW, chartH = 640, 130
	chartPad       = 8
)

// newStaleChart scales pts into a chart. The y axis runs from 0 to the
// largest of the figures and twice the goal, so the goal line sits at most
// half way up and a figure above it stands out.
func newStaleChart(pts []chartPoint, goal float64) *staleChart {
	top := 2 * goal
	for _, p := range pts {
		for _, v := range []float64{p.Predicted, p.Observed} {
			if !math.IsNaN(v) && v > top {
				top = v
			}
		}
	}
	if top <= 0 {
		top = 0.001
	}
	c := &staleChart{Width: chartW, Height: chartH, Top: formatProb(top), Goal: formatProb(goal)}
	y := func(v float64) float64 {
		return math.Round((chartH-chartPad-(chartH-2*chartPad)*v/top)*10) / 10
	}
	x := func(i int) float64 {
		if len(pts) == 1 {
			return chartW / 2
		}
		return math.Round((chartPad+float64(i)*(chartW-2*chartPad)/float64(len(pts)-1))*10) / 10
	}
	var pred, obs []string
	for i, p := range pts {
		if !math.IsNaN(p.Predicted) {
			d := chartDot{x(i), y(p.Predicted)}
			c.PredictedDots = append(c.PredictedDots, d)
			pred = append(pred, fmt.Sprintf("%g,%g", d.X, d.Y))
		}
		if !math.IsNaN(p.Observed) {
			d := chartDot{x(i), y(p.Observed)}
			c.ObservedDots = append(c.ObservedDots, d)
			obs = append(obs, fmt.Sprintf("%g,%g", d.X, d.Y))
		}
	}
	c.Predicted, c.Observed = strings.Join(pred, " "), strings.Join(obs, " ")
	c.GoalY = y(goal)
	return c
}

// formatProb renders a probability compactly: 0.1%, 0.012%, 0.
func formatProb(p float64) string {
	if p == 0 {
		return "0"
	}
	return fmt.Sprintf("%.3g%%", 100*p)
}

// timeLeft renders a certificate's remaining validity for people.
func timeLeft(d time.Duration) string {
	switch {
	case d <= 0:
		return "expired"
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
}

func formatBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
