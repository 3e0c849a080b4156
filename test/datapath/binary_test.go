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
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/test/framework"
)

var (
	buildOnce  sync.Once
	binPath    string
	rusagePath string
	buildErr   error
)

// binary builds cmd/kdc-etcd-backup once per test process, the way it ships (`make build`:
// CGO_ENABLED=0, so no libc is mapped), and installs it the way a node gets it: written in
// 32 KiB pieces, as containerd unpacks an image layer. How the file got into the page cache
// matters for the benchmarks' peak RSS, because the binary's text and read-only data pages count
// towards RSS and the kernel maps a file's page cache in whole folios, whose size follows the
// writes that created them: `kdc-etcd-backup --version` peaks at 37-38 MiB when the file was
// written in pieces of up to 64 KiB or read back from disk, at 42-43 MiB when it is the linker's
// output (written through a shared mapping), and at 57-58 MiB when it was written in 1 MiB
// pieces (docs/benchmarks.md, data path). It also builds the rusage helper (see run).
func binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kdc-etcd-backup-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kdc-etcd-backup")
		rusagePath = filepath.Join(dir, "rusage")
		linked := filepath.Join(dir, "build", "kdc-etcd-backup")
		for _, b := range []struct{ out, pkg string }{{linked, "./cmd/kdc-etcd-backup"}, {rusagePath, "./test/datapath/rusage"}} {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Dir = framework.RootDir()
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v: %s", b.pkg, err, out)
				return
			}
		}
		buildErr = installCopy(linked, binPath)
		os.RemoveAll(filepath.Dir(linked))
	})
	if buildErr != nil {
		tb.Fatalf("failed to build the binary: %v", buildErr)
	}
	return binPath
}

// installCopy writes a copy of the executable src to dst in 32 KiB writes, as containerd's layer
// unpacking (io.Copy's buffer size) does; see binary.
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
	// Through a plain buffer: io.Copy between two files would use copy_file_range.
	if _, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 32<<10)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// runResult is one run of the binary.
type runResult struct {
	code     int
	stderr   string
	stdout   string // the log
	term     map[string]any
	duration time.Duration
	maxRSS   int64 // bytes
	cpu      time.Duration
}

// run runs the binary with S3 credentials in the environment and reads its termination message.
// It runs it under the rusage helper (test/datapath/rusage), which reports the binary's own peak
// RSS: measured directly, a child of this test process would report the test process's peak RSS
// whenever that is higher, because at exec Linux folds the memory the vforked child shared with
// its parent into the child's ru_maxrss. Duration and CPU time are the binary's, as measured by
// the helper.
func (en *env) run(tb testing.TB, args ...string) runResult {
	tb.Helper()
	return en.runBinary(tb, binary(tb), args...)
}

// runBinary is run with the binary bin.
func (en *env) runBinary(tb testing.TB, bin string, args ...string) runResult {
	tb.Helper()
	dir := tb.TempDir()
	term, usageFile := filepath.Join(dir, "termination-log"), filepath.Join(dir, "rusage.json")
	cmd := exec.Command(rusagePath, append([]string{"-o", usageFile, "--", bin}, append(args, "--termination-message-path", term)...)...)
	cmd.Env = append(os.Environ(), snapshot.EnvAccessKeyID+"="+en.cred.AccessKeyID, snapshot.EnvSecretAccessKey+"="+en.cred.SecretAccessKey)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := runResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		tb.Fatalf("failed to run the binary: %v", err)
	}
	var usage struct {
		MaxRSS             int64
		User, System, Wall time.Duration
	}
	b, err := os.ReadFile(usageFile)
	if err == nil {
		err = json.Unmarshal(b, &usage)
	}
	if err != nil {
		tb.Fatalf("failed to run the binary (exit code %d, %s): no resource usage: %v", r.code, r.stderr, err)
	}
	r.duration, r.cpu, r.maxRSS = usage.Wall, usage.User+usage.System, usage.MaxRSS
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
	if diff := cmp.Diff([]any{float64(rev), float64(rev), float64(jobspec.DefaultBumpRevision), float64(rev + jobspec.DefaultBumpRevision), e.DataDir + ".previous"},
		[]any{r.term["revision"], r.term["revisionBefore"], r.term["bumpRevision"], r.term["restoredRevision"], r.term["previousDataDir"]}); diff != "" {
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
