package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func runPush(args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	archive := fs.String("archive", "bin/kdc-etcd-backup-image.tar", "image archive written by build")
	refFlag := fs.String("ref", "", "where to push, such as registry.example/kdc-etcd-backup:v0.1.0")
	insecure := fs.Bool("insecure", false, "allow a plain-HTTP registry (a local one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *refFlag == "" {
		return fmt.Errorf("--ref is required (make image-push REGISTRY=...)")
	}
	var opts []name.Option
	if *insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(*refFlag, opts...)
	if err != nil {
		return fmt.Errorf("invalid --ref: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	digest, err := push(ctx, *archive, ref)
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", ref.Context(), digest)
	return nil
}

// push uploads the archive's only image to ref with the credentials of the docker config (as
// crane does) and returns its digest, which equals the archive's.
func push(ctx context.Context, archive string, ref name.Reference) (string, error) {
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return "", fmt.Errorf("failed to read the image archive %s (run `make image`): %w", archive, err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("failed to push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}
