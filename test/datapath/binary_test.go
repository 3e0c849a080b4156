package datapath

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/test/framework"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/kdc-etcd-backup once per test process, the way it ships (`make build`:
// CGO_ENABLED=0, so no libc is mapped), and installs it by copying, as unpacking an image layer
// does. The copy matters for the benchmarks' peak RSS: the binary's text and read-only data pages
// count towards RSS, and the linker writes its output through a shared mapping, which leaves the
// file's page cache in a state where running it maps up to 5 MiB more of those pages than a
// written copy of the same bytes (or the file read back from disk) does, varying from build to
// build (docs/benchmarks.md, data path).
func binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kdc-etcd-backup-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kdc-etcd-backup")
		linked := filepath.Join(dir, "build", "kdc-etcd-backup")
		cmd := exec.Command("go", "build", "-o", linked, "./cmd/kdc-etcd-backup")
		cmd.Dir = framework.RootDir()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
			return
		}
		buildErr = installCopy(linked, binPath)
		os.RemoveAll(filepath.Dir(linked))
	})
	if buildErr != nil {
		tb.Fatalf("failed to build the binary: %v", buildErr)
	}
	return binPath
}

// installCopy writes a copy of the executable src to dst.
func installCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	// Plain reads and writes, as tar does when it unpacks a layer (io.Copy between two files
	// would use copy_file_range).
	if _, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 1<<20)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// runResult is one run of the binary.
type runResult struct {
	code     int
	stderr   string
	term     map[string]any
	duration time.Duration
	maxRSS   int64 // bytes
	cpu      time.Duration
}

// run runs the binary with S3 credentials in the environment and reads its termination message.
func (en *env) run(tb testing.TB, args ...string) runResult {
	tb.Helper()
	term := filepath.Join(tb.TempDir(), "termination-log")
	cmd := exec.Command(binary(tb), append(args, "--termination-message-path", term)...)
	cmd.Env = append(os.Environ(), snapshot.EnvAccessKeyID+"="+en.cred.AccessKeyID, snapshot.EnvSecretAccessKey+"="+en.cred.SecretAccessKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	r := runResult{stderr: stderr.String(), duration: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		tb.Fatalf("failed to run the binary: %v", err)
	}
	if cmd.ProcessState != nil {
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024 // kilobytes on Linux
	}
	if b, err := os.ReadFile(term); err == nil {
		if err := json.Unmarshal(b, &r.term); err != nil || bytes.Count(bytes.TrimSpace(b), []byte("\n")) != 0 {
			tb.Errorf("termination message is not one line of JSON: %q (%v)", b, err)
		}
	}
	return r
}

func (en *env) s3Args() []string {
	return []string{"--s3-endpoint", en.loc.Endpoint, "--bucket", en.loc.Bucket, "--prefix", "tenants"}
}

// TestBinary runs the subcommands as the Jobs do: flags, credentials from the environment,
// exit codes, one-line stderr and the JSON termination message.
func TestBinary(t *testing.T) {
	en := newEnv(t)
	peerPort, _ := framework.FreePort()
	e := framework.StartEtcd(t, framework.EtcdOptions{Version: framework.EtcdVersion35, PeerPort: peerPort})
	fill(t, e.Client(t), "/registry/namespaces/", 100, 512)
	want, rev := contents(t, e.Client(t))

	b := en.run(t, append([]string{"backup", "--cluster", "prod", "--endpoints", e.ClientURL,
		"--cacert", e.Certs.CAFile, "--cert", e.Certs.ClientCert, "--key", e.Certs.ClientKey, "--retention-days", "3"}, en.s3Args()...)...)
	if b.code != 0 {
		t.Fatalf("backup exited %d: %s", b.code, b.stderr)
	}
	key, _ := b.term["key"].(string)
	for _, f := range []string{"key", "objectKey", "bucket", "size", "sha256", "revision", "etcdVersion", "durationSeconds", "lifecycle"} {
		if _, ok := b.term[f]; !ok {
			t.Errorf("backup termination message lacks %q: %v", f, b.term)
		}
	}
	if diff := cmp.Diff([]any{"tenants/" + key, float64(rev), "applied"}, []any{b.term["objectKey"], b.term["revision"], b.term["lifecycle"]}); diff != "" {
		t.Errorf("backup termination message mismatch (-want +got):\n%s", diff)
	}

	v := en.run(t, append([]string{"verify", "--key", key, "--cluster", "prod"}, en.s3Args()...)...)
	if v.code != 0 || v.term["sha256"] != b.term["sha256"] {
		t.Errorf("verify exited %d (%s) with %v; want 0 and sha256 %v", v.code, v.stderr, v.term, b.term["sha256"])
	}

	missing := en.run(t, append([]string{"verify", "--key", "prod/prod-20200101T000000Z.db"}, en.s3Args()...)...)
	gotMissing := []any{missing.code, missing.term["reason"], strings.Count(missing.stderr, "\n"), strings.Contains(missing.stderr, "tenants/prod/prod-20200101T000000Z.db")}
	if diff := cmp.Diff([]any{int(snapshot.ExitObjectMissing), "ObjectMissing", 1, true}, gotMissing); diff != "" {
		t.Errorf("verify of a missing key [code reason stderr-lines names-object] mismatch (-want +got):\n%s\nstderr: %s", diff, missing.stderr)
	}

	usage := en.run(t, "restore", "--no-such-flag")
	if diff := cmp.Diff(int(snapshot.ExitUsage), usage.code); diff != "" {
		t.Errorf("usage exit code mismatch (-want +got):\n%s", diff)
	}

	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	r := en.run(t, append([]string{"restore", "--key", key, "--cluster", "prod", "--data-dir", e.DataDir,
		"--initial-advertise-peer-urls", framework.PeerURLFor(peerPort)}, en.s3Args()...)...)
	if r.code != 0 {
		t.Fatalf("restore exited %d: %s", r.code, r.stderr)
	}
	if diff := cmp.Diff([]any{float64(rev), float64(rev + snapshot.DefaultBumpRevision), e.DataDir + ".previous"}, []any{r.term["revision"], r.term["restoredRevision"], r.term["previousDataDir"]}); diff != "" {
		t.Errorf("restore termination message mismatch (-want +got):\n%s", diff)
	}
	restored := framework.StartEtcd(t, framework.EtcdOptions{Version: framework.EtcdVersion35, DataDir: e.DataDir, PeerPort: peerPort, Certs: e.Certs})
	got, _ := contents(t, restored.Client(t))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored keys mismatch (-want +got):\n%s", diff)
	}
	if err := restored.Stop(); err != nil {
		t.Fatal(err)
	}
	rb := en.run(t, "rollback", "--data-dir", e.DataDir)
	rb2 := en.run(t, "rollback", "--data-dir", filepath.Join(t.TempDir(), "default.etcd"))
	if diff := cmp.Diff([]int{0, int(snapshot.ExitNoPreviousGeneration)}, []int{rb.code, rb2.code}); diff != "" {
		t.Errorf("rollback exit codes mismatch (-want +got):\n%s", diff)
	}
}
