package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"kube-dc.com/etcd-backup/test/framework"
)

const (
	binaryPath        = "/kdc-etcd-backup"
	managerBinaryPath = "/kdc-etcd-backup-manager"
	caPath            = "/etc/ssl/certs/ca-certificates.crt"
)

var (
	buildOnce sync.Once
	archives  [2]string
	buildErr  error
)

// builtTwice runs `make image` twice, into two directories, and returns both archives.
func builtTwice(t *testing.T) [2]string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the image")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kdc-image-")
		if err != nil {
			buildErr = err
			return
		}
		for i := range archives {
			if archives[i], buildErr = framework.BuildImage(filepath.Join(dir, string(rune('a'+i)))); buildErr != nil {
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("make image: %v", buildErr)
	}
	return archives
}

func load(t *testing.T, archive string) v1.Image {
	t.Helper()
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestTwoBuildsGiveOneDigest(t *testing.T) {
	a := builtTwice(t)
	first, second := digest(t, load(t, a[0])), digest(t, load(t, a[1]))
	if first != second {
		t.Fatalf("two builds of one commit gave digests %s and %s", first, second)
	}
	t.Logf("digest of both builds: %s", first)
}

// file is what the test checks of a file in the image.
type file struct {
	Mode     int64
	UID, GID int
}

func TestImageFiles(t *testing.T) {
	img := load(t, builtTwice(t)[0])
	entries, files, err := framework.ReadTar(mutate.Extract(img))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]file{}
	contents := map[string][]byte{}
	for _, e := range entries {
		p := "/" + strings.TrimSuffix(e.Name, "/")
		got[p] = file{Mode: e.Mode, UID: e.UID, GID: e.GID}
		contents[p] = files[e.Name]
	}
	want := map[string]file{
		"/etc":            {Mode: 0o755},
		"/etc/ssl":        {Mode: 0o755},
		"/etc/ssl/certs":  {Mode: 0o755},
		caPath:            {Mode: 0o644},
		binaryPath:        {Mode: 0o755},
		managerBinaryPath: {Mode: 0o755},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("image files (-want +got):\n%s", diff)
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(contents[caPath]) || strings.Count(string(contents[caPath]), "BEGIN CERTIFICATE") < 100 {
		t.Errorf("%s is not a CA bundle of the public roots", caPath)
	}

	// The binaries are static: they run here as the image would run them, and report the build's
	// version.
	for _, p := range []string{binaryPath, managerBinaryPath} {
		bin := filepath.Join(t.TempDir(), filepath.Base(p))
		if err := os.WriteFile(bin, contents[p], 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", p, err, out)
		}
		if !strings.HasPrefix(string(out), "kdc-etcd-backup v") || strings.Contains(string(out), "commit unknown") {
			t.Errorf("%s --version = %q, want the version and commit of the build", p, out)
		}
		if !bytes.HasPrefix(contents[p], []byte("\x7fELF")) {
			t.Errorf("%s is not an ELF binary", p)
		}
		if out, err := exec.Command("ldd", bin).CombinedOutput(); err == nil && !strings.Contains(string(out), "not a dynamic executable") && !strings.Contains(string(out), "statically linked") {
			t.Errorf("%s is dynamically linked:\n%s", p, out)
		}
	}
}

func TestImageConfig(t *testing.T) {
	img := load(t, builtTwice(t)[0])
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	rev, err := exec.Command("git", "-C", framework.RootDir(), "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	type config struct {
		User, WorkingDir, OS string
		Entrypoint, Cmd      []string
		Labels               map[string]string
	}
	got := config{User: cf.Config.User, WorkingDir: cf.Config.WorkingDir, OS: cf.OS, Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Labels: cf.Config.Labels}
	want := config{
		User: "65532:65532", WorkingDir: "/", OS: "linux", Entrypoint: []string{binaryPath},
		Labels: map[string]string{
			"org.opencontainers.image.source":   "https://kube-dc.com/etcd-backup",
			"org.opencontainers.image.revision": strings.TrimSpace(string(rev)),
			"org.opencontainers.image.version":  "v0.1.0",
			"org.opencontainers.image.title":    "kdc-etcd-backup",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("image config (-want +got):\n%s", diff)
	}
	if cf.Created.Unix() == 0 || cf.Created.After(cf.History[0].Created.Time) || cf.Created.Before(cf.History[0].Created.Time) {
		t.Errorf("created %s, history %s: want the commit's time in both", cf.Created, cf.History[0].Created)
	}
}

// TestDockerfileDescribesTheSameImage reads the Dockerfile's instructions and compares them
// with the built image's config and files.
func TestDockerfileDescribesTheSameImage(t *testing.T) {
	img := load(t, builtTwice(t)[0])
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(framework.RootDir(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type image struct {
		From, User, WorkingDir string
		Entrypoint             []string
		Env                    []string
		Files                  []string
		Labels                 []string
	}
	var got image
	var lines []string
	sc := bufio.NewScanner(f)
	for cont := ""; sc.Scan(); {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cont += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines, cont = append(lines, cont+l), ""
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		fields := strings.Fields(rest)
		switch instr {
		case "FROM":
			got.From = rest
		case "USER":
			got.User = rest
		case "WORKDIR":
			got.WorkingDir = rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &got.Entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT is not exec form: %v", err)
			}
		case "ENV":
			got.Env = append(got.Env, fields...)
		case "COPY":
			got.Files = append(got.Files, fields[len(fields)-1])
		case "LABEL":
			for _, kv := range fields {
				k, _, _ := strings.Cut(kv, "=")
				got.Labels = append(got.Labels, k)
			}
		}
	}
	var labels []string
	for k := range cf.Config.Labels {
		labels = append(labels, k)
	}
	sort.Strings(labels)
	sort.Strings(got.Labels)
	sort.Strings(got.Files)
	want := image{
		From: "scratch", User: cf.Config.User, WorkingDir: cf.Config.WorkingDir,
		Entrypoint: cf.Config.Entrypoint, Env: cf.Config.Env,
		Files:  []string{caPath, binaryPath, managerBinaryPath}, // sorted
		Labels: labels,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Dockerfile (-image +Dockerfile):\n%s", diff)
	}
}

// TestPushToARegistry pushes the archive with `make image-push`'s program to a registry on
// loopback and reads the same digest back.
func TestPushToARegistry(t *testing.T) {
	archive := builtTwice(t)[0]
	// httptest listens on 127.0.0.1.
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/kdc-etcd-backup:v0.1.0"

	cmd := exec.CommandContext(context.Background(), "go", "run", "./hack/image", "push", "--insecure", "--archive", archive, "--ref", ref)
	cmd.Dir = framework.RootDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, remote.WithTransport(http.DefaultTransport))
	if err != nil {
		t.Fatal(err)
	}
	if want := digest(t, load(t, archive)); desc.Digest != want {
		t.Errorf("the registry holds %s, want the archive's %s", desc.Digest, want)
	}
	if !strings.Contains(string(out), desc.Digest.String()) {
		t.Errorf("push printed %q, want the digest %s", out, desc.Digest)
	}
}
