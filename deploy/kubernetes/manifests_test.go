// Package kubernetes_test checks the manifests in this folder: each decodes
// strictly into its Kubernetes API type, and the pieces are wired to each
// other and to the real node (flags, ports, HTTP paths, certificate files).
package kubernetes_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/internal/testbin"
	"github.com/adaptkv/adaptkv/node"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; decoding it strictly refuses anything else, so a new field is a
// deliberate change here too.
type kustomization struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Resources  []string         `json:"resources"`
	Images     []kustomizeImage `json:"images"`
}

// kustomizeImage is one entry of a kustomization's images.
type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
}

// manifests are the decoded objects of the kustomization.
type manifests struct {
	sts      *appsv1.StatefulSet
	services map[string]*corev1.Service
	pdb      *policyv1.PodDisruptionBudget
	monitor  *monitoringv1.ServiceMonitor
}

// load decodes kustomization.yaml and every resource it lists, strictly:
// an unknown or misspelt field is an error, as it would be silently
// dropped by the API server (or refused by kubectl --validate=strict).
func load(t *testing.T) (kustomization, manifests) {
	t.Helper()
	var k kustomization
	decodeFile(t, "kustomization.yaml", &k)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml is %s %s", k.APIVersion, k.Kind)
	}
	onDisk, _ := filepath.Glob("*.yaml")
	onDisk = slices.DeleteFunc(onDisk, func(s string) bool { return s == "kustomization.yaml" })
	if listed := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(listed, onDisk) {
		t.Errorf("kustomization resources %v; the folder holds %v", listed, onDisk)
	}
	m := manifests{services: map[string]*corev1.Service{}}
	for _, f := range k.Resources {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			where := fmt.Sprintf("%s document %d (%s %s)", f, i, tm.APIVersion, tm.Kind)
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 StatefulSet":
				if m.sts != nil {
					t.Fatalf("%s: a second StatefulSet", where)
				}
				m.sts = new(appsv1.StatefulSet)
				decode(t, where, doc, m.sts)
			case "v1 Service":
				s := new(corev1.Service)
				decode(t, where, doc, s)
				m.services[s.Name] = s
			case "policy/v1 PodDisruptionBudget":
				m.pdb = new(policyv1.PodDisruptionBudget)
				decode(t, where, doc, m.pdb)
			case "monitoring.coreos.com/v1 ServiceMonitor":
				m.monitor = new(monitoringv1.ServiceMonitor)
				decode(t, where, doc, m.monitor)
			default:
				t.Fatalf("%s: a kind this test does not know; add it", where)
			}
		}
	}
	if m.sts == nil || m.pdb == nil || m.monitor == nil || len(m.services) != 2 {
		t.Fatalf("want a StatefulSet, two Services, a PodDisruptionBudget and a ServiceMonitor; got %d services, sts %v, pdb %v, monitor %v",
			len(m.services), m.sts != nil, m.pdb != nil, m.monitor != nil)
	}
	return k, m
}

func stripComments(doc string) string {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")
}

func decodeFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	decode(t, path, string(b), v)
}

func decode(t *testing.T, where, doc string, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

// TestStrictDecodeRefusesUnknownFields makes sure the decoding above would
// catch a misspelt field.
func TestStrictDecodeRefusesUnknownFields(t *testing.T) {
	doc := "apiVersion: apps/v1\nkind: StatefulSet\nspec:\n  replica: 3\n"
	if err := yaml.UnmarshalStrict([]byte(doc), new(appsv1.StatefulSet)); err == nil {
		t.Fatal("strict decoding accepted spec.replica")
	}
}

// TestWiring checks that the objects refer to each other correctly.
func TestWiring(t *testing.T) {
	k, m := load(t)
	sts := m.sts
	pod := labels.Set(sts.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil || !sel.Matches(pod) {
		t.Errorf("StatefulSet selector %v does not select its pod labels %v (%v)", sts.Spec.Selector, pod, err)
	}
	headless, ok := m.services[sts.Spec.ServiceName]
	if !ok {
		t.Fatalf("StatefulSet serviceName %q is none of the Services", sts.Spec.ServiceName)
	}
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("peers Service %s: clusterIP %q, publishNotReadyAddresses %v; want None and true (gossip must find nodes before they are ready)",
			headless.Name, headless.Spec.ClusterIP, headless.Spec.PublishNotReadyAddresses)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q; want Parallel (no pod is ready before bootstrap-expect pods run)", sts.Spec.PodManagementPolicy)
	}
	c := container(t, sts)
	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}
	for _, s := range m.services {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(pod) {
			t.Errorf("Service %s selects %v, not the StatefulSet's pods %v", s.Name, s.Spec.Selector, pod)
		}
		for _, sp := range s.Spec.Ports {
			cp, ok := ports[sp.TargetPort.StrVal]
			if !ok || cp.Protocol != sp.Protocol && !(sp.Protocol == "" && cp.Protocol == corev1.ProtocolTCP || cp.Protocol == "" && sp.Protocol == corev1.ProtocolTCP) {
				t.Errorf("Service %s port %s targets %q, which is no container port of that protocol", s.Name, sp.Name, sp.TargetPort.String())
			}
		}
	}
	if !slices.ContainsFunc(k.Images, func(im kustomizeImage) bool { return im.Name == c.Image }) {
		t.Errorf("container image %q is not named in kustomization images, so an overlay cannot set it", c.Image)
	}
	if m.services["adaptkv"] == nil || m.services["adaptkv"].Spec.ClusterIP == corev1.ClusterIPNone {
		t.Error("no client Service adaptkv with a cluster IP")
	}

	pdbSel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
	if err != nil || !pdbSel.Matches(pod) {
		t.Errorf("PodDisruptionBudget selects %v, not the pods %v", m.pdb.Spec.Selector, pod)
	}
	if mu := m.pdb.Spec.MaxUnavailable; mu == nil || mu.IntValue() != 1 || m.pdb.Spec.MinAvailable != nil {
		t.Errorf("PodDisruptionBudget maxUnavailable %v minAvailable %v; want maxUnavailable 1", mu, m.pdb.Spec.MinAvailable)
	}

	monSel, err := metav1.LabelSelectorAsSelector(&m.monitor.Spec.Selector)
	if err != nil || !monSel.Matches(labels.Set(headless.Labels)) {
		t.Errorf("ServiceMonitor selects %v, not the peers Service (labels %v)", m.monitor.Spec.Selector, headless.Labels)
	}
	for _, s := range m.services {
		if s != headless && monSel.Matches(labels.Set(s.Labels)) {
			t.Errorf("ServiceMonitor also selects Service %s: every node would be scraped twice", s.Name)
		}
	}
	for _, e := range m.monitor.Spec.Endpoints {
		if !slices.ContainsFunc(headless.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
			t.Errorf("ServiceMonitor endpoint port %q is not a port of %s", e.Port, headless.Name)
		}
		if e.Path != "/metrics" {
			t.Errorf("ServiceMonitor path %q; the node serves /metrics", e.Path)
		}
	}
}

func container(t *testing.T, sts *appsv1.StatefulSet) corev1.Container {
	t.Helper()
	cs := sts.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers; want 1", len(cs))
	}
	return cs[0]
}

// args parses the container's --flag=value arguments.
func args(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for _, a := range c.Args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Fatalf("argument %q: want --flag=value", a)
		}
		flags[name] = value
	}
	return flags
}

// TestFlagsMatchPod checks the node's flags against the rest of the pod:
// ports, volumes, the certificate Secret, the seeds and the environment.
func TestFlagsMatchPod(t *testing.T) {
	_, m := load(t)
	sts := m.sts
	c := container(t, sts)
	f := args(t, c)
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	fieldOf := func(name string) string {
		if e, ok := env[name]; ok && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
		}
		return ""
	}
	if f["id"] != "$(POD_NAME)" || fieldOf("POD_NAME") != "metadata.name" {
		t.Errorf("--id=%s with POD_NAME from %q; want the pod name (stable across restarts)", f["id"], fieldOf("POD_NAME"))
	}
	if fieldOf("POD_IP") != "status.podIP" || fieldOf("POD_NAMESPACE") != "metadata.namespace" {
		t.Errorf("POD_IP from %q, POD_NAMESPACE from %q", fieldOf("POD_IP"), fieldOf("POD_NAMESPACE"))
	}
	if got := fieldOf("ADAPTKV_ZONE"); got != "metadata.labels['"+corev1.LabelTopologyZone+"']" {
		t.Errorf("ADAPTKV_ZONE from %q; want the pod label the PodTopologyLabels admission copies from the node", got)
	}

	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name+"/"+string(p.Protocol)] = p
	}
	for flag, names := range map[string][]string{
		"grpc-addr":   {"grpc/"},
		"gossip-addr": {"gossip-tcp/TCP", "gossip-udp/UDP"},
		"raft-addr":   {"raft/"},
		"http-addr":   {"http/"},
	} {
		host, port, err := net.SplitHostPort(f[flag])
		if err != nil || host != "$(POD_IP)" {
			t.Errorf("--%s=%s: want $(POD_IP):PORT (the node advertises what it binds)", flag, f[flag])
			continue
		}
		for _, n := range names {
			cp, ok := ports[n]
			if !ok || strconv.Itoa(int(cp.ContainerPort)) != port {
				t.Errorf("--%s port %s; container port %s is %d", flag, port, n, cp.ContainerPort)
			}
		}
	}
	_, gossipPort, _ := net.SplitHostPort(f["gossip-addr"])
	seeds := strings.Split(f["seeds"], ",")
	for i, s := range seeds {
		want := fmt.Sprintf("%s-%d.%s.$(POD_NAMESPACE).svc:%s", sts.Name, i, sts.Spec.ServiceName, gossipPort)
		if s != want {
			t.Errorf("seed %d = %q; want %q (the pod's DNS name in the headless Service)", i, s, want)
		}
	}
	if r := sts.Spec.Replicas; r == nil || len(seeds) > int(*r) {
		t.Errorf("%d seeds for %v replicas", len(seeds), r)
	}
	if e := env["ADAPTKV_BOOTSTRAP_EXPECT"]; e.Value != strconv.Itoa(int(*sts.Spec.Replicas)) {
		t.Errorf("ADAPTKV_BOOTSTRAP_EXPECT=%q; want the first cluster's size %d", e.Value, *sts.Spec.Replicas)
	}

	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	data := mounts[f["data-dir"]]
	if !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == data }) {
		t.Errorf("--data-dir=%s is not a volume claim template's mount (mount %q)", f["data-dir"], data)
	}
	certs := mounts[f["certs-dir"]]
	var secret *corev1.SecretVolumeSource
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == certs {
			secret = v.Secret
		}
	}
	if secret == nil {
		t.Fatalf("--certs-dir=%s is not a Secret volume's mount", f["certs-dir"])
	}
	want := []string{security.CACertFile, security.NodeCertFile, security.NodeKeyFile, security.GossipKeyFile}
	var keys []string
	for _, it := range secret.Items {
		keys = append(keys, it.Key)
		if it.Path != it.Key {
			t.Errorf("Secret key %s mounted as %s; the node reads it by the key's name", it.Key, it.Path)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(keys)), slices.Sorted(slices.Values(want))) {
		t.Errorf("Secret keys %v; internal/security reads %v", keys, want)
	}

	// Kubernetes expands $(VAR) only from variables defined earlier in the
	// list; anything else stays literally in the argument.
	defined := map[string]bool{}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range c.Env {
		for _, r := range ref.FindAllStringSubmatch(e.Value, -1) {
			if !defined[r[1]] {
				t.Errorf("env %s refers to $(%s), which is not defined before it", e.Name, r[1])
			}
		}
		defined[e.Name] = true
	}
	for _, a := range c.Args {
		for _, r := range ref.FindAllStringSubmatch(a, -1) {
			if !defined[r[1]] {
				t.Errorf("argument %s refers to $(%s), which is no env variable of the container", a, r[1])
			}
		}
	}

	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	mib := env["GOMEMLIMIT_MIB"].ValueFrom
	if !ok || limit.IsZero() || mib == nil || mib.ResourceFieldRef == nil || mib.ResourceFieldRef.Resource != "limits.memory" ||
		mib.ResourceFieldRef.Divisor.String() != "1Mi" || env["GOMEMLIMIT"].Value != "$(GOMEMLIMIT_MIB)MiB" {
		t.Errorf("GOMEMLIMIT is not the memory limit (%v) in MiB: %+v %+v", limit, env["GOMEMLIMIT_MIB"], env["GOMEMLIMIT"])
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		t.Error("no memory request")
	}
}

// TestFlagsAreNodeFlags runs the real binary's `adaptkv node` command
// line parser on the container's arguments and ADAPTKV_ variables, with
// the Kubernetes variables replaced by example values: an unknown flag or
// a malformed value fails it.
func TestFlagsAreNodeFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds adaptkv")
	}
	_, m := load(t)
	c := container(t, m.sts)
	bin, err := testbin.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	help, err := exec.Command(bin, "node", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("adaptkv node --help: %v\n%s", err, help)
	}
	example := map[string]string{
		"POD_NAME": "adaptkv-0", "POD_NAMESPACE": "default", "POD_IP": "10.1.2.3", "ADAPTKV_ZONE": "zone-a",
	}
	expand := func(s string) string {
		return regexp.MustCompile(`\$\(([A-Z_]+)\)`).ReplaceAllStringFunc(s, func(v string) string {
			name := v[2 : len(v)-1]
			val, ok := example[name]
			if !ok {
				t.Errorf("%s: no example value for $(%s)", s, name)
			}
			return val
		})
	}
	var argv []string
	for _, a := range c.Args {
		argv = append(argv, expand(a))
	}
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, "ADAPTKV_") {
			continue
		}
		v := e.Value
		if e.ValueFrom != nil {
			v = example[e.Name]
		}
		argv = append(argv, "--"+strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(e.Name, "ADAPTKV_"), "_", "-"))+"="+expand(v))
	}
	parse := func(extra ...string) error {
		cmd := exec.Command(bin, append(append(append([]string{"node"}, argv...), extra...), "--help")...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%w: %s", err, out.String())
		}
		return nil
	}
	if err := parse(); err != nil {
		t.Errorf("adaptkv node %s: %v", strings.Join(argv, " "), err)
	}
	// The check itself: a flag the node lacks must fail the parse.
	if err := parse("--no-such-flag=1"); err == nil {
		t.Error("the parser accepted --no-such-flag: this test checks nothing")
	}
	t.Run("runs", func(t *testing.T) {
		runContainer(t, bin, string(help), c, *m.sts.Spec.Template.Spec.TerminationGracePeriodSeconds)
	})
}

// runContainer starts the binary the way the kubelet starts the container:
// the manifest's arguments and environment (GOMEMLIMIT and the ADAPTKV_
// variables as real variables), with the pod IP a loopback address of its
// own, the data directory and the certificates (a CA, a node certificate
// and a gossip key, the Secret's four files) in temporary folders. Alone,
// with seeds that do not resolve, the node must come up alive (liveness
// 200) but not ready (readiness 503), and stop cleanly on SIGTERM within
// the pod's grace period.
func runContainer(t *testing.T, bin, help string, c corev1.Container, graceSeconds int64) {
	ip := fmt.Sprintf("127.0.%d.%d", 100+os.Getpid()%100, 2+os.Getpid()%250)
	dataDir, certsDir := t.TempDir(), t.TempDir()
	if err := errors.Join(
		security.CreateCA(certsDir, security.CreateOptions{}),
		security.CreateNode(certsDir, []string{ip}, security.CreateOptions{}),
		security.CreateGossipKey(certsDir, false),
		os.Remove(filepath.Join(certsDir, security.CAKeyFile)), // not in the Secret
	); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"POD_NAME": "adaptkv-0", "POD_NAMESPACE": "default", "POD_IP": ip}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	expand := func(s string) string {
		return ref.ReplaceAllStringFunc(s, func(v string) string { return vars[v[2:len(v)-1]] })
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "ADAPTKV_") || strings.HasPrefix(kv, "GOMEMLIMIT=")
	})
	for _, e := range c.Env {
		v := expand(e.Value)
		if from := e.ValueFrom; from != nil {
			switch {
			case from.ResourceFieldRef != nil:
				q := c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(from.ResourceFieldRef.Resource, "limits."))]
				v = strconv.FormatInt(q.Value()/from.ResourceFieldRef.Divisor.Value(), 10)
			case e.Name == "ADAPTKV_ZONE":
				v = "zone-a"
			default:
				v = vars[e.Name]
			}
		}
		vars[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	var argv []string
	for _, a := range c.Args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch name {
		case "data-dir":
			a = "--data-dir=" + dataDir
		case "certs-dir":
			a = "--certs-dir=" + certsDir
		}
		argv = append(argv, expand(a))
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"node"}, argv...)...)
	cmd.Env, cmd.Stderr = env, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	running := true
	defer func() {
		if running {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("adaptkv node %s\nenv %v\nstderr:\n%s", strings.Join(argv, " "), env[len(env)-len(c.Env):], stderr.String())
		}
	}()
	httpAddr := ""
	for _, a := range argv {
		if v, ok := strings.CutPrefix(a, "--http-addr="); ok {
			httpAddr = v
		}
	}
	get := func(path string) int {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for get(c.LivenessProbe.HTTPGet.Path) != http.StatusOK {
		select {
		case err := <-exited:
			running = false
			t.Fatalf("the node exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s never answered 200", c.LivenessProbe.HTTPGet.Path)
		}
	}
	if code := get(c.ReadinessProbe.HTTPGet.Path); code != http.StatusServiceUnavailable {
		t.Errorf("GET %s on a node that cannot reach its seeds: %d; want 503 (not ready)", c.ReadinessProbe.HTTPGet.Path, code)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		running = false
		if err != nil {
			t.Errorf("the node stopped with %v after SIGTERM", err)
		}
	case <-time.After(time.Duration(graceSeconds) * time.Second):
		t.Error("the node did not stop within the grace period after SIGTERM")
	}
}

// TestProbePathsAreServed starts a real node in process and asks its HTTP
// server for each probe path: the readiness path must turn 200 once the
// single-node cluster has formed, the others must answer 200 at once.
func TestProbePathsAreServed(t *testing.T) {
	_, m := load(t)
	c := container(t, m.sts)
	if c.ReadinessProbe == nil || c.LivenessProbe == nil || c.StartupProbe == nil {
		t.Fatal("want readiness, liveness and startup probes")
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		if p.HTTPGet == nil || p.HTTPGet.Port.StrVal != "http" {
			t.Fatalf("probe %+v: want an HTTP GET on the port named http", p.ProbeHandler)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path == c.LivenessProbe.HTTPGet.Path {
		t.Errorf("liveness and readiness on the same path %s: a node that is not ready (no metadata leader) would be restarted", c.LivenessProbe.HTTPGet.Path)
	}

	cfg := node.DefaultLocalConfig()
	cfg.ID, cfg.InMemory, cfg.BootstrapExpect = "probe-1", true, 1
	cfg.GRPCAddr, cfg.GossipAddr, cfg.RaftAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := n.Stop(sctx); err != nil {
			t.Error(err)
		}
	}()
	get := func(path string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Addrs().HTTP+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	for _, p := range []string{c.LivenessProbe.HTTPGet.Path, c.StartupProbe.HTTPGet.Path} {
		if code, err := get(p); code != http.StatusOK {
			t.Errorf("GET %s on a starting node: %d %v; liveness must hold while the node is up", p, code, err)
		}
	}
	ready := c.ReadinessProbe.HTTPGet.Path
	for {
		code, err := get(ready)
		if code == http.StatusOK {
			break
		}
		if code == http.StatusNotFound || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("GET %s: %d %v; the node never became ready there", ready, code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Draining (what SIGTERM starts), the node turns not-ready at once
	// while it is still alive, so that the Service stops routing to it
	// before it stops.
	drained := make(chan error, 1)
	go func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		drained <- n.Drain(dctx)
	}()
	for !n.Draining() {
		time.Sleep(time.Millisecond)
	}
	if code, err := get(ready); code != http.StatusServiceUnavailable {
		t.Errorf("GET %s on a draining node: %d %v; want 503", ready, code, err)
	}
	if code, err := get(c.LivenessProbe.HTTPGet.Path); code != http.StatusOK {
		t.Errorf("GET %s on a draining node: %d %v; want 200 (alive until it stops)", c.LivenessProbe.HTTPGet.Path, code, err)
	}
	if err := <-drained; err != nil {
		t.Errorf("drain: %v", err)
	}
}

// TestGracePeriodCoversDrain checks that the kubelet waits longer after
// SIGTERM than the node may drain: otherwise a drain that needs its whole
// time is cut by SIGKILL.
func TestGracePeriodCoversDrain(t *testing.T) {
	_, m := load(t)
	c := container(t, m.sts)
	drain := 30 * time.Second // the flag's default
	for _, e := range c.Env {
		if e.Name == "ADAPTKV_DRAIN_TIMEOUT" {
			d, err := time.ParseDuration(e.Value)
			if err != nil {
				t.Fatalf("ADAPTKV_DRAIN_TIMEOUT %q: %v", e.Value, err)
			}
			drain = d
		}
	}
	g := m.sts.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil || time.Duration(*g)*time.Second < drain+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v; want at least the drain timeout %v plus 5 s for the stop", g, drain)
	}
}
