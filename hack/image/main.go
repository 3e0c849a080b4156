// Command image builds and pushes the product's OCI image without a Docker daemon (`make image`,
// `make image-push`, docs/install.md):
//
//	go run ./hack/image build --binary bin/image/kdc-etcd-backup --tag kdc-etcd-backup:v0.1.0 \
//	    --out bin/kdc-etcd-backup-v0.1.0.tar --version v0.1.0 --revision <commit> --created <unix seconds>
//	go run ./hack/image push --archive bin/kdc-etcd-backup-v0.1.0.tar --ref registry.example/kdc-etcd-backup:v0.1.0
//
// build writes a docker-compatible image archive (docker load, kind load image-archive, crane
// push) and prints the image's digest. The same inputs always give the same digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: image build|push [flags]")
		os.Exit(64)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = runBuild(os.Args[2:])
	case "push":
		err = runPush(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want build or push)", os.Args[1])
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "image %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
