package nodeagent

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// testArchive writes an image archive with /bin/tool and /etc/motd, entrypoint /bin/tool serve,
// user 65532:65532 and PATH=/bin.
func testArchive(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data string
	}{{"bin/", 0o755, ""}, {"bin/tool", 0o755, "#!tool\n"}, {"etc/", 0o755, ""}, {"etc/motd", 0o644, "hello\n"}} {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}
		if f.data == "" {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/bin/tool"}, Cmd: []string{"serve"}, User: "65532:65532", Env: []string{"PATH=/bin", "MODE=image"}, WorkingDir: "/etc"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tool.tar")
	if err := tarball.WriteToFile(path, name.MustParseReference("example/tool:v1"), img); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestImageArchiveRun(t *testing.T) {
	a := &Agent{opts: Options{ImageArchives: map[string]string{"tool": testArchive(t)}, Images: map[string]string{}}}
	a.roots.dir = t.TempDir()
	for _, tt := range []struct {
		name          string
		command, args []string
		want          []string
	}{
		{name: "entrypoint and cmd", want: []string{"/bin/tool", "serve"}},
		{name: "args replace cmd", args: []string{"check", "--fast"}, want: []string{"/bin/tool", "check", "--fast"}},
		{name: "command replaces both", command: []string{"/bin/tool"}, args: []string{"x"}, want: []string{"/bin/tool", "x"}},
		{name: "command found in the image's PATH", command: []string{"tool", "y"}, want: []string{"/bin/tool", "y"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			run, err := a.resolveRun("registry.example/team/tool:v1", tt.command, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, run.argv); diff != "" {
				t.Errorf("argv (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"PATH=/bin", "MODE=image"}, run.env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			if run.workingDir != "/etc" {
				t.Errorf("working dir %q, want the image's /etc", run.workingDir)
			}
			fi, err := os.Stat(filepath.Join(run.rootfs, "bin", "tool"))
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("unpacked /bin/tool: %v, mode %v", err, fi)
			}
			if b, err := os.ReadFile(filepath.Join(run.rootfs, "etc", "motd")); err != nil || string(b) != "hello\n" {
				t.Errorf("unpacked /etc/motd: %q, %v", b, err)
			}
		})
	}
	if _, err := a.resolveRun("tool", []string{"missing"}, nil); err == nil {
		t.Error("a command that is not in the image resolved")
	}

	run, err := a.resolveRun("tool", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	type user struct{ UID, GID *int64 }
	for _, tt := range []struct {
		name string
		sc   *corev1.PodSecurityContext
		want user
	}{
		{"the image's user", nil, user{ptr.To[int64](65532), ptr.To[int64](65532)}},
		{"the pod's user", &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)}, user{ptr.To[int64](1000), ptr.To[int64](0)}},
		{"the pod's group with the image's user", &corev1.PodSecurityContext{RunAsGroup: ptr.To[int64](7)}, user{ptr.To[int64](65532), ptr.To[int64](7)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: tt.sc}}
			uid, gid, _ := containerUser(pod, &corev1.Container{}, run)
			if diff := cmp.Diff(tt.want, user{uid, gid}); diff != "" {
				t.Errorf("user (-want +got):\n%s", diff)
			}
		})
	}
}
