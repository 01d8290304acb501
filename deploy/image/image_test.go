package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestImage builds the image the way `make image` does (a static binary,
// then the tarball), reads the tarball back, checks its configuration and
// files, and runs the binary found inside it. The build of the static
// binary is the slow part: with a warm build cache it is a link.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a static adaptkv binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "adaptkv.tar")
	o := options{out: out, tag: "example.test/adaptkv:v9.9.9-test", version: "v9.9.9-test", revision: "0123456789abcdef", source: defaultSource, arch: "amd64", caFile: defaultCAFile}
	if _, err := os.Stat(defaultCAFile); err != nil {
		t.Skipf("no CA bundle on this machine: %v", err)
	}
	ref, err := build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("read back %s as %s: %v", out, ref, err)
	}
	// Digests, sizes and diff IDs agree between manifest, config and
	// layers, as a loader checks them.
	if err := validate.Image(img); err != nil {
		t.Errorf("the tarball's image is inconsistent: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user = %q; want 65532:65532 (non-root)", c.User)
	}
	if want := []string{"/usr/local/bin/adaptkv", "node"}; !slices.Equal(c.Entrypoint, want) {
		t.Errorf("entrypoint = %q; want %q", c.Entrypoint, want)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.source":   defaultSource,
		"org.opencontainers.image.version":  "v9.9.9-test",
		"org.opencontainers.image.revision": "0123456789abcdef",
	} {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s = %q; want %q", k, got, want)
		}
	}
	for _, p := range []string{"7400/tcp", "7401/udp", "7401/tcp", "7402/tcp", "7403/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed: %v", p, c.ExposedPorts)
		}
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform = %s/%s; want linux/amd64", cf.OS, cf.Architecture)
	}
	if layers, _ := img.Layers(); len(layers) != 1 {
		t.Errorf("%d layers; want 1 (no base image)", len(layers))
	}

	files := readFS(t, mutate.Extract(img))
	bin, ok := files["usr/local/bin/adaptkv"]
	if !ok {
		t.Fatalf("no /usr/local/bin/adaptkv in the image; files: %v", keys(files))
	}
	if bin.hdr.Mode&0o111 == 0 {
		t.Errorf("adaptkv mode %o is not executable", bin.hdr.Mode)
	}
	if p, ok := files["etc/passwd"]; !ok || !strings.Contains(string(p.data), "adaptkv:x:65532:65532:") {
		t.Errorf("/etc/passwd does not name uid 65532: %q", p.data)
	}
	if d, ok := files["var/lib/adaptkv"]; !ok || d.hdr.Uid != 65532 || d.hdr.Typeflag != tar.TypeDir {
		t.Errorf("data directory /var/lib/adaptkv missing or not owned by 65532: %+v", d.hdr)
	}
	hostCA, _ := os.ReadFile(defaultCAFile)
	if ca := files["etc/ssl/certs/ca-certificates.crt"]; !bytes.Equal(ca.data, hostCA) {
		t.Errorf("CA bundle in the image (%d bytes) differs from the build machine's (%d bytes)", len(ca.data), len(hostCA))
	}

	// The binary must run without a libc: no dynamic loader, no shared
	// libraries.
	exe := filepath.Join(t.TempDir(), "adaptkv")
	if err := os.WriteFile(exe, bin.data, 0o755); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("binary has a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := ef.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v", libs)
	}
	ef.Close()
	vout, err := exec.CommandContext(ctx, exe, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("adaptkv version from the image: %v", err)
	}
	var v struct{ Version, Revision string }
	if err := json.Unmarshal(vout, &v); err != nil || v.Version != "v9.9.9-test" || v.Revision != "0123456789abcdef" {
		t.Errorf("adaptkv version = %s (%v); want version v9.9.9-test revision 0123456789abcdef", vout, err)
	}

	dockerLoad(t, ctx, out, ref)
}

// dockerLoad loads the tarball into a running Docker daemon and checks the
// user Docker sees; without a daemon it skips.
func dockerLoad(t *testing.T, ctx context.Context, tarPath, ref string) {
	t.Run("docker load", func(t *testing.T) {
		docker, err := exec.LookPath("docker")
		if err != nil {
			t.Skip("no docker client")
		}
		if err := exec.CommandContext(ctx, docker, "info").Run(); err != nil {
			t.Skipf("no docker daemon: %v", err)
		}
		if b, err := exec.CommandContext(ctx, docker, "load", "-i", tarPath).CombinedOutput(); err != nil {
			t.Fatalf("docker load: %v\n%s", err, b)
		}
		defer exec.Command(docker, "image", "rm", ref).Run()
		b, err := exec.CommandContext(ctx, docker, "image", "inspect", "-f", "{{.Config.User}}", ref).CombinedOutput()
		if err != nil || strings.TrimSpace(string(b)) != "65532:65532" {
			t.Errorf("docker image inspect %s: user %q, %v", ref, b, err)
		}
	})
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

// readFS reads a flattened image filesystem into memory, by path without
// the leading slash or trailing slash.
func readFS(t *testing.T, rc io.ReadCloser) map[string]entry {
	t.Helper()
	defer rc.Close()
	files := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.Trim(h.Name, "/")] = entry{h, data}
	}
}

func keys(m map[string]entry) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestDockerfileMatches keeps deploy/image/Dockerfile and the Go builder
// in step on what users see: user, entrypoint, ports and paths.
func TestDockerfileMatches(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	want := []string{
		"USER 65532:65532",
		`ENTRYPOINT ["/usr/local/bin/adaptkv", "node"]`,
		"CGO_ENABLED=0",
		"-trimpath",
		"FROM scratch",
		caPath,
		dataDir,
		"org.opencontainers.image.source",
		"org.opencontainers.image.version",
		"org.opencontainers.image.revision",
	}
	for _, p := range ports {
		want = append(want, p)
	}
	for _, w := range want {
		if !strings.Contains(df, w) {
			t.Errorf("Dockerfile lacks %q, which the Go builder puts in the image", w)
		}
	}
}
