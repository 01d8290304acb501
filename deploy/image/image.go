package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image layout. The Dockerfile beside this file must build the same
// image; TestDockerfileMatches holds the two together.
const (
	defaultSource = "https://github.com/adaptkv/adaptkv"
	defaultCAFile = "/etc/ssl/certs/ca-certificates.crt"

	binaryPath = "/usr/local/bin/adaptkv"
	caPath     = "/etc/ssl/certs/ca-certificates.crt"
	dataDir    = "/var/lib/adaptkv"

	// uid and gid 65532 are the "nonroot" of distroless images: high
	// enough to match no user of the host, and what Kubernetes policies
	// that require runAsNonRoot commonly expect.
	uid      = 65532
	userName = "adaptkv"
)

// entrypoint runs a node; the pod or `docker run` supplies its flags.
var entrypoint = []string{binaryPath, "node"}

// ports are the node's default ports (node.DefaultConfig): gRPC API,
// gossip (TCP and UDP), Raft, and HTTP (/metrics, /healthz).
var ports = []string{"7400/tcp", "7401/tcp", "7401/udp", "7402/tcp", "7403/tcp"}

// options are the inputs of one build; empty fields take the defaults
// main documents.
type options struct {
	out, tag          string
	version, revision string
	source            string
	arch              string
	caFile            string
	binary            string // prebuilt binary; empty builds one
}

// build compiles adaptkv (unless o.binary names one), assembles the image
// and writes it to o.out. It returns the tag written.
func build(ctx context.Context, o options) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	if o.version == "" {
		o.version = gitOr(ctx, root, "dev", "describe", "--tags", "--always", "--dirty")
	}
	if o.revision == "" {
		o.revision = gitOr(ctx, root, "unknown", "rev-parse", "HEAD")
	}
	if o.tag == "" {
		o.tag = "adaptkv:" + strings.NewReplacer("/", "-", "+", "-").Replace(o.version)
	}
	tag, err := name.NewTag(o.tag, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("tag %q: %w", o.tag, err)
	}
	bin := o.binary
	if bin == "" {
		dir, err := os.MkdirTemp("", "adaptkv-image-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "adaptkv")
		if err := buildBinary(ctx, root, bin, o); err != nil {
			return "", err
		}
	}
	img, err := assemble(o, bin, time.Unix(commitTime(ctx, root), 0).UTC())
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return "", err
	}
	if err := tarball.WriteToFile(o.out, tag, img); err != nil {
		return "", fmt.Errorf("write %s: %w", o.out, err)
	}
	return tag.String(), nil
}

// buildBinary compiles ./cmd/adaptkv for linux/o.arch into out: CGO off so
// that it needs no libc in an image without one, -trimpath so that no
// path of the build machine ends up in it, and the version stamped for
// `adaptkv version`.
func buildBinary(ctx context.Context, root, out string, o options) error {
	ldflags := fmt.Sprintf("-s -w -X main.buildVersion=%s -X main.buildRevision=%s", o.version, o.revision)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./cmd/adaptkv")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/adaptkv: %w\n%s", err, b)
	}
	return nil
}

// assemble builds the image from the binary at bin and the CA bundle at
// o.caFile; every file gets the timestamp created, so that the same inputs
// give the same image digest.
func assemble(o options, bin string, created time.Time) (v1.Image, error) {
	binData, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read binary: %w", err)
	}
	caFile := o.caFile
	if caFile == "" {
		caFile = defaultCAFile
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificates (pass -ca-certs): %w", err)
	}
	if !bytes.Contains(ca, []byte("BEGIN CERTIFICATE")) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	layerTar, err := rootfs(binData, ca, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	arch := o.arch
	if arch == "" {
		arch = "amd64"
	}
	exposed := map[string]struct{}{}
	for _, p := range ports {
		exposed[p] = struct{}{}
	}
	cfg := &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: created},
		// mutate.Append fills in the diff IDs but not the type, and loaders
		// check it (validate.Image does).
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{
			User:         fmt.Sprintf("%d:%d", uid, uid),
			Entrypoint:   entrypoint,
			WorkingDir:   dataDir,
			Env:          []string{"PATH=/usr/local/bin", "ADAPTKV_DATA_DIR=" + dataDir},
			ExposedPorts: exposed,
			Volumes:      map[string]struct{}{dataDir: {}},
			Labels:       labels(o),
		},
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "go run ./deploy/image",
			Comment:   "adaptkv binary, CA certificates, user adaptkv, data directory",
		},
	})
}

// labels are the OCI annotations of the image config.
func labels(o options) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "adaptkv",
		"org.opencontainers.image.description": "adaptkv node: a replicated key-value store with tunable consistency",
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
	}
}

// passwd and group name the image's only unprivileged user, so that tools
// (and Go's os/user) resolve uid 65532 to a name and a home.
var (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		userName + ":x:" + strconv.Itoa(uid) + ":" + strconv.Itoa(uid) + ":adaptkv:" + dataDir + ":/sbin/nologin\n"
	group = "root:x:0:\n" + userName + ":x:" + strconv.Itoa(uid) + ":\n"
)

// rootfs writes the image's only layer.
func rootfs(bin, ca []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: owner, Gid: owner, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err := errors.Join(
		dir("etc", 0o755, 0),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		dir("etc/ssl", 0o755, 0),
		dir("etc/ssl/certs", 0o755, 0),
		file(strings.TrimPrefix(caPath, "/"), 0o644, ca),
		// Go's TLS looks here first, and some tools only here.
		dir("tmp", 0o1777, 0),
		dir("usr", 0o755, 0),
		dir("usr/local", 0o755, 0),
		dir("usr/local/bin", 0o755, 0),
		file(strings.TrimPrefix(binaryPath, "/"), 0o755, bin),
		dir("var", 0o755, 0),
		dir("var/lib", 0o755, 0),
		// The data directory belongs to the node's user, so that the node
		// can write to a fresh volume mounted there (Kubernetes also sets
		// fsGroup) or to the anonymous volume of a plain `docker run`.
		dir(strings.TrimPrefix(dataDir, "/"), 0o700, uid),
		tw.Close(),
	)
	if err != nil {
		return nil, fmt.Errorf("image filesystem: %w", err)
	}
	return buf.Bytes(), nil
}

// moduleRoot is the directory of the adaptkv go.mod, where go build runs.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the adaptkv module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// gitOr runs git in dir and returns its trimmed output, or def when git
// or the repository is missing (a source tarball builds too).
func gitOr(ctx context.Context, dir, def string, args ...string) string {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if s := strings.TrimSpace(string(out)); err == nil && s != "" {
		return s
	}
	return def
}

// commitTime is the time of HEAD (or SOURCE_DATE_EPOCH when set), the
// timestamp of the image and its files: a fixed time makes rebuilds of one
// commit byte-identical. Without either it is the Unix epoch.
func commitTime(ctx context.Context, dir string) int64 {
	if s, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return s
	}
	s, err := strconv.ParseInt(gitOr(ctx, dir, "0", "log", "-1", "--format=%ct"), 10, 64)
	if err != nil {
		return 0
	}
	return s
}
