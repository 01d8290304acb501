// Command image builds the adaptkv container image without a Docker
// daemon: it compiles a static adaptkv binary (CGO off, -trimpath) and
// assembles an OCI image with no base layer (the equivalent of FROM
// scratch) holding the binary, the build machine's CA certificates, an
// /etc/passwd with the unprivileged user adaptkv (uid 65532), and a data
// directory that user owns. It writes a tarball that `docker load` and
// `podman load` accept. Nothing is fetched from a registry, so it runs
// offline.
//
// Run it from the repository root as `make image` or
//
//	go run ./deploy/image -o bin/adaptkv-image.tar -tag adaptkv:dev
//
// deploy/image/Dockerfile builds the same image with Docker.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
)

func main() {
	var o options
	flag.StringVar(&o.out, "o", "bin/adaptkv-image.tar", "tarball to write")
	flag.StringVar(&o.tag, "tag", "", "image reference recorded in the tarball (default adaptkv:VERSION)")
	flag.StringVar(&o.version, "version", "", "version label and `adaptkv version` (default: git describe, else dev)")
	flag.StringVar(&o.revision, "revision", "", "source revision label (default: git rev-parse HEAD, else unknown)")
	flag.StringVar(&o.source, "source", defaultSource, "org.opencontainers.image.source label")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH of the binary and the image")
	flag.StringVar(&o.caFile, "ca-certs", defaultCAFile, "CA bundle of the build machine copied into the image")
	flag.StringVar(&o.binary, "binary", "", "use this prebuilt static linux binary instead of building one")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "image: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ref, err := build(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%s); load it with: docker load -i %s\n", o.out, ref, o.out)
}
