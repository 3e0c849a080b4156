package nodeagent

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"POD_IP": "127.64.0.2", "NAME": "etcd-0"}
	for in, want := range map[string]string{
		"--listen=http://$(POD_IP):2379": "--listen=http://127.64.0.2:2379",
		"$(NAME)=$(POD_IP)":              "etcd-0=127.64.0.2",
		"$(UNKNOWN) stays":               "$(UNKNOWN) stays",
		"$$(POD_IP) escaped":             "$(POD_IP) escaped",
		"a $ b $":                        "a $ b $",
		"unterminated $(POD_IP":          "unterminated $(POD_IP",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImageKeys(t *testing.T) {
	for image, want := range map[string][]string{
		"etcd":                         {"etcd", "etcd"},
		"kdc-etcd-backup:v0.1.0":       {"kdc-etcd-backup:v0.1.0", "kdc-etcd-backup:v0.1.0", "kdc-etcd-backup", "kdc-etcd-backup"},
		"mirror/etcd:3.5.35-0":         {"mirror/etcd:3.5.35-0", "etcd:3.5.35-0", "mirror/etcd", "etcd"},
		"mirror:5000/minio/minio":      {"mirror:5000/minio/minio", "minio"},
		"mirror/coreos/etcd@sha256:ab": {"mirror/coreos/etcd", "etcd"},
	} {
		if diff := cmp.Diff(want, imageKeys(image)); diff != "" {
			t.Errorf("imageKeys(%q) (-want +got):\n%s", image, diff)
		}
	}
}

func TestResolveArgv(t *testing.T) {
	dir := t.TempDir()
	etcd := filepath.Join(dir, "etcd")
	etcdctl := filepath.Join(dir, "etcdctl")
	for _, f := range []string{etcd, etcdctl} {
		if err := writeFile(dir, filepath.Base(f), nil, nil, new(int32(0o755))); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"entrypoint", nil, []string{"--name=x"}, []string{etcd, "--name=x"}},
		{"command names the binary", []string{"/usr/local/bin/etcd", "--a"}, []string{"--b"}, []string{etcd, "--a", "--b"}},
		{"sibling tool", []string{"etcdctl", "get"}, nil, []string{etcdctl, "get"}},
		{"machine program", []string{"sh", "-c", "true"}, nil, []string{"/usr/bin/sh", "-c", "true"}},
		{"unknown command runs the entrypoint", []string{"/manager", "backup"}, []string{"--x"}, []string{etcd, "backup", "--x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolveArgv(etcd, tt.command, tt.args)
			if tt.name == "machine program" {
				got[0] = "/usr/bin/" + filepath.Base(got[0])
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resolveArgv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIPAMKeepsAddressPerPod(t *testing.T) {
	m, err := newIPAM("127.70.1.0/29")
	if err != nil {
		t.Fatal(err)
	}
	if m.hostIP != "127.70.1.1" {
		t.Errorf("hostIP = %s", m.hostIP)
	}
	a, _ := m.allocate("ns/etcd-0")
	b, _ := m.allocate("ns/web")
	m.release(a)
	again, _ := m.allocate("ns/etcd-0")
	if again != a || b == a {
		t.Errorf("etcd-0 got %s then %s (web %s), want the same address back", a, again, b)
	}
	if _, err := newIPAM("10.0.0.0/24"); err == nil {
		t.Error("a non-loopback block was accepted")
	}
}
