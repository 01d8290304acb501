package node_test

import (
	"bytes"
	"context"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// findChromium returns a headless-capable Chromium on this machine, "" if
// none. Tests do not install it: CI's .ci/run does (Debian's chromium).
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// runChromium runs headless Chromium with args then url, in a profile of
// its own, and returns its standard output.
func runChromium(t *testing.T, bin, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--no-first-run", "--disable-extensions", "--disable-background-networking", "--mute-audio",
		"--user-data-dir=" + t.TempDir(),
	}, args...)
	all = append(all, url)
	cmd := exec.CommandContext(ctx, bin, all...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(all, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// A real browser renders the status page of a running 3-node cluster: the
// DOM it builds has the page's sections, and its screenshot is a page, not
// a blank: the header's colour and each member's colour in the ring bar
// are there. ADAPTKV_STATUS_SCREENSHOT=path keeps the screenshot (the one
// in docs/status-page.png was taken so).
func TestStatusPageInBrowser(t *testing.T) {
	bin := findChromium()
	if bin == "" {
		t.Skip("no Chromium found (chromium, chromium-browser or google-chrome): install Debian's chromium to run the browser test (.ci/run does)")
	}
	t.Parallel()
	c := startStatusCluster(t)
	url := "http://" + c.Node(0).Addrs().HTTP + "/"

	dom := string(runChromium(t, bin, url, "--dump-dom"))
	for _, w := range []string{
		`id="members"`, `id="ring-bar"`, `id="keyspaces"`, `id="tuner"`, `class="stale-chart"`,
		`id="none-flagged"`, `id="hints-pending"`, `data-id="n1"`, `data-id="n2"`, `data-id="n3"`,
		`data-name="adapt"`, `class="decision"`,
	} {
		if !strings.Contains(dom, w) {
			t.Errorf("the browser's DOM lacks %q", w)
		}
	}

	const width, height = 1280, 1800
	shot := filepath.Join(t.TempDir(), "status.png")
	runChromium(t, bin, url, "--screenshot="+shot, "--window-size=1280,1800")
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if got := img.Bounds().Size(); got.X != width || got.Y != height {
		t.Errorf("screenshot is %v; want %dx%d", got, width, height)
	}
	colours := map[color.RGBA]int{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 2 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 255}]++
		}
	}
	if len(colours) < 50 {
		t.Errorf("screenshot has %d colours; a blank or broken page has few", len(colours))
	}
	// The header's background, and each member's ring segment (the first
	// three of the palette): the SVG was drawn.
	for name, want := range map[string]color.RGBA{
		"header": {0x1f, 0x2d, 0x3d, 255},
		"n1":     {0x4e, 0x79, 0xa7, 255}, "n2": {0xf2, 0x8e, 0x2b, 255}, "n3": {0x59, 0xa1, 0x4f, 255},
	} {
		if px := near(colours, want); px < 100 {
			t.Errorf("%s colour %v: %d sampled pixels; want a filled area", name, want, px)
		}
	}
	if out := os.Getenv("ADAPTKV_STATUS_SCREENSHOT"); out != "" {
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot kept in %s", out)
	}
}

// near counts the sampled pixels within 3 of want on every channel
// (colour management may round).
func near(colours map[color.RGBA]int, want color.RGBA) int {
	d := func(a, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
	n := 0
	for c, k := range colours {
		if d(c.R, want.R) <= 3 && d(c.G, want.G) <= 3 && d(c.B, want.B) <= 3 {
			n += k
		}
	}
	return n
}
