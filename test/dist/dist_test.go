package dist

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"kube-dc.com/etcd-backup/test/framework"
)

// platforms the test builds: one of each OS (the release builds all four, see TestReleasePlatforms).
var platforms = []string{"linux/amd64", "darwin/arm64"}

type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Caveats          string `json:"caveats"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
			Files  []struct {
				From string `json:"from"`
				To   string `json:"to"`
			} `json:"files"`
		} `json:"platforms"`
	} `json:"spec"`
}

func TestDist(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds the plugin")
	}
	out := t.TempDir()
	if b, err := framework.Make("dist", "DIST_DIR="+out, "DIST_PLATFORMS="+strings.Join(platforms, " ")).CombinedOutput(); err != nil {
		t.Fatalf("make dist: %v\n%s", err, b)
	}

	sums := map[string]string{}
	f, err := os.Open(filepath.Join(out, "kubectl-kdc_v0.1.0_checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		sum, name, _ := strings.Cut(sc.Text(), "  ")
		sums[name] = sum
	}

	data, err := os.ReadFile(filepath.Join(out, "kdc.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m krewPlugin
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		t.Fatalf("kdc.yaml: %v\n%s", err, data)
	}
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "kdc" ||
		m.Spec.Version != "v0.1.0" || m.Spec.ShortDescription == "" || m.Spec.Homepage == "" {
		t.Errorf("kdc.yaml is not krew's Plugin kdc v0.1.0:\n%s", data)
	}
	if len(m.Spec.Platforms) != len(platforms) {
		t.Fatalf("kdc.yaml has %d platforms, want %d", len(m.Spec.Platforms), len(platforms))
	}
	for i, p := range platforms {
		os, arch, _ := strings.Cut(p, "/")
		pl := m.Spec.Platforms[i]
		archive := "kubectl-kdc_v0.1.0_" + os + "_" + arch + ".tar.gz"
		if diff := cmp.Diff(map[string]string{"os": os, "arch": arch}, pl.Selector.MatchLabels); diff != "" {
			t.Errorf("platform %d selector (-want +got):\n%s", i, diff)
		}
		if !strings.HasSuffix(pl.URI, "/"+archive) || pl.Bin != "kubectl-kdc" {
			t.Errorf("platform %s: uri %s bin %s, want .../%s and kubectl-kdc", p, pl.URI, pl.Bin, archive)
		}
		sum := fileSHA256(t, filepath.Join(out, archive))
		if pl.SHA256 != sum || sums[archive] != sum {
			t.Errorf("%s: sha256 %s, manifest %s, checksums file %s", archive, sum, pl.SHA256, sums[archive])
		}
		files := checkArchive(t, filepath.Join(out, archive), os, arch)
		for _, fl := range pl.Files {
			if files[fl.From] == nil {
				t.Errorf("%s: manifest copies %s, which the archive lacks", archive, fl.From)
			}
		}
	}
}

// checkArchive checks the entries of an archive and the platform of its binary; it returns the
// entries' contents.
func checkArchive(t *testing.T, path, goos, goarch string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	got, files, err := framework.ReadTar(zr)
	if err != nil {
		t.Fatal(err)
	}
	want := []framework.TarEntry{{Name: "README.md", Mode: 0o644}, {Name: "kubectl-kdc", Mode: 0o755}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s entries (-want +got):\n%s", filepath.Base(path), diff)
	}
	bin := filepath.Join(t.TempDir(), "kubectl-kdc")
	if err := os.WriteFile(bin, files["kubectl-kdc"], 0o755); err != nil {
		t.Fatal(err)
	}
	switch goos {
	case "linux":
		e, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer e.Close()
		if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]; e.Machine != want {
			t.Errorf("%s: ELF machine %s, want %s", path, e.Machine, want)
		}
	case "darwin":
		mf, err := macho.Open(bin)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer mf.Close()
		if want := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[goarch]; mf.Cpu != want {
			t.Errorf("%s: Mach-O CPU %s, want %s", path, mf.Cpu, want)
		}
	}
	if goos == "linux" && goarch == "amd64" {
		out, err := exec.Command(bin, "--help").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "restore") {
			t.Errorf("kubectl-kdc --help: %v\n%s", err, out)
		}
	}
	return files
}

// TestReleasePlatforms: a release builds the four platforms krew users ask for.
func TestReleasePlatforms(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(framework.RootDir(), "hack", "dist.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `PLATFORMS=${DIST_PLATFORMS:-"linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"}`) {
		t.Error("hack/dist.sh does not build linux and darwin on amd64 and arm64 by default")
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
