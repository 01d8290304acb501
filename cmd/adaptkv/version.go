package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at link time by release builds (deploy/image passes
// -X main.buildVersion=... -X main.buildRevision=...). A plain `go build`
// leaves them empty, and version falls back to what the Go toolchain
// stamped into the binary, if anything.
var (
	buildVersion  string
	buildRevision string
)

// versionJSONOut is the JSON form of `adaptkv version`.
type versionJSONOut struct {
	Version  string `json:"version"`
	Revision string `json:"revision"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// binaryVersion reports the version and revision of this binary: the
// link-time values when set, else the module version and VCS revision Go
// recorded, else "devel" and "unknown".
func binaryVersion() (version, revision string) {
	version, revision = buildVersion, buildRevision
	if info, ok := debug.ReadBuildInfo(); ok {
		if version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			version = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && revision == "" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "devel"
	}
	if revision == "" {
		revision = "unknown"
	}
	return version, revision
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, source revision and Go version of this binary",
		Args:  cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, r := binaryVersion()
			out := versionJSONOut{Version: v, Revision: r, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
			format, err := a.format()
			if err != nil {
				return err
			}
			if format == formatJSON {
				return a.printJSON(out)
			}
			_, err = fmt.Fprintf(a.stdout, "adaptkv %s (revision %s, %s %s)\n", out.Version, out.Revision, out.Go, out.Platform)
			return err
		},
	}
}
