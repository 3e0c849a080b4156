package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The image's layout; the Dockerfile and the manifests' command use the same paths: the Jobs'
// binary (the entrypoint) and the manager's.
const (
	binaryPath        = "/kdc-etcd-backup"
	managerBinaryPath = "/kdc-etcd-backup-manager"
	caPath            = "/etc/ssl/certs/ca-certificates.crt"
	// nonRoot is distroless's nonroot user and group, the manifests' runAsUser.
	nonRoot = "65532:65532"
)

// buildOptions are the inputs of an image; equal options give an equal digest.
type buildOptions struct {
	Binary        string
	ManagerBinary string
	Arch          string
	Version       string
	Revision      string
	Source        string
	Created       time.Time
}

func runBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	var o buildOptions
	var out, tag, caOut, created string
	fs.StringVar(&o.Binary, "binary", "bin/image/kdc-etcd-backup", "the static kdc-etcd-backup binary, the Jobs' (CGO_ENABLED=0)")
	fs.StringVar(&o.ManagerBinary, "manager-binary", "bin/image/kdc-etcd-backup-manager", "the static kdc-etcd-backup-manager binary (CGO_ENABLED=0)")
	fs.StringVar(&o.Arch, "arch", runtime.GOARCH, "GOARCH the binary was built for")
	fs.StringVar(&o.Version, "version", "v0.1.0", "org.opencontainers.image.version")
	fs.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision: the commit")
	fs.StringVar(&o.Source, "source", "https://kube-dc.com/etcd-backup", "org.opencontainers.image.source: where the code lives")
	fs.StringVar(&created, "created", "0", "creation time and file times, in Unix seconds (SOURCE_DATE_EPOCH)")
	fs.StringVar(&tag, "tag", "kdc-etcd-backup:v0.1.0", "the reference the archive names (docker load tags the image with it)")
	fs.StringVar(&out, "out", "bin/kdc-etcd-backup-image.tar", "image archive to write")
	fs.StringVar(&caOut, "ca-out", "", "also write the CA bundle here (the Dockerfile copies it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secs, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid --created %q: %w", created, err)
	}
	o.Created = time.Unix(secs, 0).UTC()
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("invalid --tag: %w", err)
	}
	ca, err := caBundle()
	if err != nil {
		return err
	}
	if caOut != "" {
		if err := os.WriteFile(caOut, ca, 0o644); err != nil {
			return err
		}
	}
	img, err := buildImage(o, ca)
	if err != nil {
		return err
	}
	if err := writeArchive(out, ref, img); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if reread, err := tarball.ImageFromPath(out, nil); err != nil {
		return err
	} else if d, err := reread.Digest(); err != nil || d != digest {
		return fmt.Errorf("the archive reads back as %s, not %s (%v)", d, digest, err)
	}
	fmt.Printf("%s %s@%s\n", out, ref, digest)
	return nil
}

// buildImage assembles the image: one layer with the two binaries and the CA bundle, owned by
// root and read-only to the non-root user that runs them.
func buildImage(o buildOptions, ca []byte) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("failed to read the binary (run `make image`): %w", err)
	}
	mgr, err := os.ReadFile(o.ManagerBinary)
	if err != nil {
		return nil, fmt.Errorf("failed to read the manager's binary (run `make image`): %w", err)
	}
	layerTar, err := layerTar(o.Created, map[string]layerFile{
		binaryPath:        {data: bin, mode: 0o755},
		managerBinaryPath: {data: mgr, mode: 0o755},
		caPath:            {data: ca, mode: 0o644},
	})
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	// Docker schema 2 media types (empty.Image's): the ones a docker-format archive keeps, so
	// the digest printed here is the one `crane push` of the archive gives.
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "make image", Comment: "kdc-etcd-backup, kdc-etcd-backup-manager and a CA bundle"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{
		Entrypoint: []string{binaryPath},
		User:       nonRoot,
		WorkingDir: "/",
		Env:        []string{"PATH=/", "SSL_CERT_FILE=" + caPath},
		Labels: map[string]string{
			"org.opencontainers.image.source":   o.Source,
			"org.opencontainers.image.revision": o.Revision,
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.title":    "kdc-etcd-backup",
		},
	}
	return mutate.ConfigFile(img, cf)
}

type layerFile struct {
	data []byte
	mode int64
}

// layerTar writes files and their parent directories as a tar stream: sorted names, root
// ownership and one fixed time, so equal files give equal bytes.
func layerTar(mtime time.Time, files map[string]layerFile) ([]byte, error) {
	dirs := map[string]bool{}
	for p := range files {
		for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d+"/")
	}
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		hdr := &tar.Header{Name: n[1:], ModTime: mtime, Format: tar.FormatPAX}
		f, isFile := files[n]
		if isFile {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, f.mode, int64(len(f.data))
		} else {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if isFile {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// caBundle is the PEM bundle of the Mozilla roots that golang.org/x/crypto/x509roots/fallback
// pins in go.mod, so the image's trust store comes from the module proxy, not this machine.
// Roots with a distrust-after constraint are left out: a PEM file cannot carry it.
func caBundle() ([]byte, error) {
	var buf bytes.Buffer
	n := 0
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		if _, err := x509.ParseCertificate(r.Certificate); err != nil {
			return nil, fmt.Errorf("invalid root in the CA bundle: %w", err)
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("the CA bundle is empty")
	}
	return buf.Bytes(), nil
}

// writeArchive writes img as a docker-compatible archive, through a temporary file so a failed
// write never leaves a truncated archive.
func writeArchive(path string, ref name.Tag, img v1.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("failed to write the image archive: %w", err)
	}
	return os.Rename(tmp, path)
}
