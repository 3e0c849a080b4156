package datapath

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/datadir"
	"kube-dc.com/etcd-backup/test/framework"
)

// mmCluster is an etcd cluster of several members started by this test: client and peer TLS,
// every URL on 127.0.0.1, each member's data directory in its own "volume" directory, as each
// DS-etcd-<i> has its own PVC.
type mmCluster struct {
	version        string
	token          string
	initialCluster string
	certs          *framework.EtcdCerts
	members        []*mmMember
}

type mmMember struct {
	name, dataDir, peerURL, clientURL, logFile string
	cmd                                        *exec.Cmd
	done                                       chan struct{}
	cli                                        *clientv3.Client
}

func newMMCluster(t testing.TB, version string, n int) *mmCluster {
	t.Helper()
	dir := t.TempDir()
	certs, err := framework.GenerateEtcdCerts(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	c := &mmCluster{version: version, token: "ds-etcd-token", certs: certs}
	var peers []string
	for i := range n {
		pp, err1 := framework.FreePort()
		cp, err2 := framework.FreePort()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		m := &mmMember{
			name:      fmt.Sprintf("ds-etcd-%d", i),
			dataDir:   filepath.Join(dir, fmt.Sprintf("etcd-data-ds-etcd-%d", i), "default.etcd"),
			peerURL:   "https://127.0.0.1:" + strconv.Itoa(pp),
			clientURL: "https://127.0.0.1:" + strconv.Itoa(cp),
			logFile:   filepath.Join(dir, fmt.Sprintf("etcd-%d.log", i)),
		}
		if err := os.MkdirAll(filepath.Dir(m.dataDir), 0o700); err != nil {
			t.Fatal(err)
		}
		c.members = append(c.members, m)
		peers = append(peers, m.name+"="+m.peerURL)
	}
	c.initialCluster = strings.Join(peers, ",")
	t.Cleanup(func() { c.stop(t) })
	return c
}

// start starts every member with the StatefulSet's flags and waits until the cluster is ready.
func (c *mmCluster) start(t testing.TB) {
	t.Helper()
	bin, err := framework.RequireBinary(filepath.Join(framework.EtcdDir(c.version), "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.members {
		logf, err := os.OpenFile(m.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		m.cmd = exec.Command(bin,
			"--name", m.name, "--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", c.initialCluster, "--initial-cluster-token", c.token, "--initial-cluster-state", "new",
			"--cert-file", c.certs.ServerCert, "--key-file", c.certs.ServerKey, "--trusted-ca-file", c.certs.CAFile, "--client-cert-auth",
			"--peer-cert-file", c.certs.ServerCert, "--peer-key-file", c.certs.ServerKey, "--peer-trusted-ca-file", c.certs.CAFile, "--peer-client-cert-auth",
			"--log-level", "warn")
		m.cmd.Stdout, m.cmd.Stderr = logf, logf
		if err := m.cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("failed to start %s: %v", m.name, err)
		}
		m.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) {
			_ = cmd.Wait()
			logf.Close()
			close(done)
		}(m.cmd, m.done)
		tlsCfg, err := c.certs.ClientTLS()
		if err != nil {
			t.Fatal(err)
		}
		if m.cli, err = clientv3.New(clientv3.Config{Endpoints: []string{m.clientURL}, TLS: tlsCfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitReady(t, 90*time.Second)
}

// ready is nil once every member answers Status with the same leader and a linearizable read
// goes through (quorum).
func (c *mmCluster) ready(ctx context.Context) error {
	var leader uint64
	for _, m := range c.members {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := m.cli.Status(cctx, m.clientURL)
		if err == nil {
			_, err = m.cli.Get(cctx, "health-check")
		}
		cancel()
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", m.name, err)
		case st.Leader == 0 || (leader != 0 && st.Leader != leader):
			return fmt.Errorf("%s: leader %x, others %x", m.name, st.Leader, leader)
		}
		leader = st.Leader
	}
	return nil
}

// waitReady waits until ready, a member exits, or timeout passes.
func (c *mmCluster) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond) // poll interval of the condition, not a wait
	defer tick.Stop()
	for {
		err := c.ready(ctx)
		if err == nil {
			return
		}
		for _, m := range c.members {
			select {
			case <-m.done:
				t.Fatalf("etcd %s %s exited during start; log:\n%s", c.version, m.name, logTail(m.logFile))
			default:
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("etcd %s cluster not ready within %s: %v; log of %s:\n%s", c.version, timeout, err, c.members[0].name, logTail(c.members[0].logFile))
		case <-tick.C:
		}
	}
}

// stop ends every member this test started, by its PID: SIGINT, SIGKILL after 30s; one after
// another, because members stopped together each wait seconds for their peers.
func (c *mmCluster) stop(t testing.TB) {
	for _, m := range c.members {
		if m.cmd == nil {
			continue
		}
		if m.cli != nil {
			m.cli.Close()
		}
		_ = m.cmd.Process.Signal(os.Interrupt)
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			t.Logf("etcd %s did not stop in 30s; killing pid %d", m.name, m.cmd.Process.Pid)
			_ = m.cmd.Process.Kill()
			<-m.done
		}
	}
	for _, m := range c.members {
		m.cmd, m.cli = nil, nil
	}
}

// waitRevision waits until every member has applied revision rev, so each one's data holds it.
func (c *mmCluster) waitRevision(t testing.TB, rev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond) // poll interval of the condition
	defer tick.Stop()
	for {
		behind := ""
		for _, m := range c.members {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := m.cli.Status(cctx, m.clientURL)
			ccancel()
			if err != nil || st.Header.Revision < rev {
				behind = m.name
			}
		}
		if behind == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not reach revision %d", behind, rev)
		case <-tick.C:
		}
	}
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// memberContents is every key with a digest of its value as member m itself holds them
// (serializable read), and the revision it serves.
func memberContents(t testing.TB, m *mmMember) (map[string]string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := m.cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithSerializable())
	if err != nil {
		t.Fatalf("failed to read %s: %v", m.name, err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = fmt.Sprintf("%x", kv.Value)
	}
	return got, resp.Header.Revision
}

// job is one run of the binary as a Job runs it: its exit code and termination message.
type job struct {
	code   int
	result jobspec.Result
	stderr string
	cpu    time.Duration
}

// runJob runs the binary with the S3 credentials in its environment; safe in goroutines.
func (en *env) runJob(bin, termDir string, args ...string) (job, error) {
	f, err := os.CreateTemp(termDir, "termination-log-")
	if err != nil {
		return job{}, err
	}
	f.Close()
	cmd := exec.Command(bin, append(args, "--termination-message-path", f.Name())...)
	cmd.Env = append(os.Environ(), snapshot.EnvAccessKeyID+"="+en.cred.AccessKeyID, snapshot.EnvSecretAccessKey+"="+en.cred.SecretAccessKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	j := job{stderr: stderr.String()}
	if cmd.ProcessState != nil {
		j.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		j.code = ee.ExitCode()
	case err != nil:
		return j, err
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return j, err
	}
	if j.result, err = jobspec.ParseResult(string(b)); err != nil {
		return j, err
	}
	return j, nil
}

// eachMember runs one Job per member of idx in parallel, as the controller does, and returns
// them in the order of idx.
func (en *env) eachMember(t testing.TB, idx []int, args func(i int) []string) []job {
	t.Helper()
	bin, termDir := binary(t), t.TempDir()
	jobs, errs := make([]job, len(idx)), make([]error, len(idx))
	var wg sync.WaitGroup
	for k, i := range idx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jobs[k], errs[k] = en.runJob(bin, termDir, args(i)...)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("failed to run the Jobs: %v", err)
	}
	return jobs
}

func allMembers(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// stageArgs are member i's staged restore, as the controller renders it.
func (c *mmCluster) stageArgs(key, endpoint string, loc jobspec.S3Location, i int, restoredRevision int64) []string {
	m := c.members[i]
	return jobspec.Restore{
		Key: key, Cluster: strings.Split(key, "/")[0],
		Member:       jobspec.Member{Name: m.name, PeerURLs: []string{m.peerURL}, InitialCluster: c.initialCluster, ClusterToken: c.token, DataDir: m.dataDir},
		BumpRevision: jobspec.DefaultBumpRevision, MarkCompacted: true,
		TargetVersion: c.version, StageOnly: true, RestoredRevision: restoredRevision,
		Location: jobspec.S3Location{Endpoint: endpoint, Bucket: loc.Bucket, Prefix: loc.Prefix},
	}.Args()
}

// stageAll stages every member's restore in parallel and, as the controller does, stages again at
// the agreed revision the members below it; it returns that revision and the staged results.
func (c *mmCluster) stageAll(t *testing.T, en *env, key string) (int64, []jobspec.Result, []int) {
	t.Helper()
	n := len(c.members)
	jobs := en.eachMember(t, allMembers(n), func(i int) []string { return c.stageArgs(key, en.loc.Endpoint, en.loc, i, 0) })
	results := make([]jobspec.Result, n)
	for i, j := range jobs {
		if j.code != 0 {
			t.Fatalf("staged restore of %s exited %d: %s", c.members[i].name, j.code, j.stderr)
		}
		results[i] = j.result
	}
	rev, restage, err := jobspec.AgreeRevision(results)
	if err != nil {
		t.Fatal(err)
	}
	if len(restage) > 0 {
		again := en.eachMember(t, restage, func(i int) []string { return c.stageArgs(key, en.loc.Endpoint, en.loc, i, rev) })
		for k, j := range again {
			if j.code != 0 {
				t.Fatalf("staged restore of %s at revision %d exited %d: %s", c.members[restage[k]].name, rev, j.code, j.stderr)
			}
			results[restage[k]] = j.result
		}
	}
	return rev, results, restage
}

// swapAll swaps every member's staged restore in, at the agreed revision, in parallel.
func (c *mmCluster) swapAll(t *testing.T, en *env, rev int64) []jobspec.Result {
	t.Helper()
	jobs := en.eachMember(t, allMembers(len(c.members)), func(i int) []string {
		return jobspec.Swap{DataDir: c.members[i].dataDir, RestoredRevision: rev}.Args()
	})
	var out []jobspec.Result
	for i, j := range jobs {
		if j.code != 0 {
			t.Fatalf("swap of %s exited %d: %s", c.members[i].name, j.code, j.stderr)
		}
		out = append(out, j.result)
	}
	return out
}

// rollbackAll runs rollback --if-swapped on every member in parallel and returns their states.
func (c *mmCluster) rollbackAll(t *testing.T, en *env) []string {
	t.Helper()
	jobs := en.eachMember(t, allMembers(len(c.members)), func(i int) []string {
		return jobspec.Rollback{DataDir: c.members[i].dataDir, IfSwapped: true}.Args()
	})
	var states []string
	for i, j := range jobs {
		if j.code != 0 {
			t.Fatalf("rollback of %s exited %d: %s", c.members[i].name, j.code, j.stderr)
		}
		states = append(states, j.result.State)
	}
	return states
}

// checkCluster checks the started cluster: every member started and listed, one cluster ID, one
// leader among them, every member at revision rev and holding exactly want.
func (c *mmCluster) checkCluster(t *testing.T, want map[string]string, rev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ml, err := c.members[0].cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var listed, wantNames []string
	ids := map[uint64]bool{}
	for _, m := range ml.Members {
		if len(m.ClientURLs) == 0 {
			t.Errorf("member %s (%x) is not started", m.Name, m.ID)
		}
		listed = append(listed, m.Name+" "+strings.Join(m.PeerURLs, ","))
		ids[m.ID] = true
	}
	for _, m := range c.members {
		wantNames = append(wantNames, m.name+" "+m.peerURL)
	}
	slices.Sort(listed)
	if diff := cmp.Diff(wantNames, listed); diff != "" {
		t.Errorf("member list mismatch (-want +got):\n%s", diff)
	}
	clusterIDs, leaders := map[uint64]bool{}, map[uint64]bool{}
	for _, m := range c.members {
		st, err := m.cli.Status(ctx, m.clientURL)
		if err != nil {
			t.Fatalf("endpoint status of %s: %v", m.name, err)
		}
		clusterIDs[st.Header.ClusterId], leaders[st.Leader] = true, true
		got, gotRev := memberContents(t, m)
		if diff := cmp.Diff(rev, st.Header.Revision); diff != "" {
			t.Errorf("%s: revision mismatch (-want +got):\n%s", m.name, diff)
		}
		if gotRev != st.Header.Revision {
			t.Errorf("%s: serves revision %d, its status says %d", m.name, gotRev, st.Header.Revision)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: keys mismatch (-want +got):\n%s", m.name, diff)
		}
	}
	if len(clusterIDs) != 1 || len(leaders) != 1 {
		t.Errorf("cluster IDs %v and leaders %v, want one of each", clusterIDs, leaders)
	}
	for l := range leaders {
		if !ids[l] {
			t.Errorf("leader %x is not a member", l)
		}
	}
}

// mmFixture is a 3-member cluster with a snapshot of it in S3 and more writes after it.
type mmFixture struct {
	c              *mmCluster
	key            string
	snapshotKeys   map[string]string
	snapshotRev    int64
	latestKeys     map[string]string
	latestRevision int64
}

func newMMFixture(t *testing.T, en *env, version, cluster string) *mmFixture {
	t.Helper()
	ctx := ctxT(t)
	c := newMMCluster(t, version, 3)
	c.start(t)
	cli := c.members[0].cli
	fill(t, cli, "/registry/configmaps/", 200, 512)
	f := &mmFixture{c: c}
	f.snapshotKeys, f.snapshotRev = memberContents(t, c.members[0])
	var endpoints []string
	for _, m := range c.members {
		endpoints = append(endpoints, m.clientURL)
	}
	bk, err := snapshot.Backup(ctx, snapshot.BackupOptions{Cluster: cluster, Endpoints: endpoints, CACert: c.certs.CAFile, Cert: c.certs.ClientCert,
		Key: c.certs.ClientKey, Location: en.loc, Credentials: en.cred, RetentionDays: 7, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("backup failed: %v", err)
	}
	f.key = bk.Key
	// Writes after the snapshot: the restore must drop them and move past their revisions.
	fill(t, cli, "/registry/secrets/", 100, 256)
	if _, err := cli.Delete(ctx, "/registry/configmaps/000003"); err != nil {
		t.Fatal(err)
	}
	f.latestKeys, f.latestRevision = memberContents(t, c.members[0])
	c.waitRevision(t, f.latestRevision)
	c.stop(t)
	return f
}

// TestMultiMemberRestore restores a 3-member etcd (v3.5, v3.6, v3.7; client and peer TLS) in
// place from a snapshot taken on it, the way the controller drives it: every member's restore
// staged in parallel (restore --swap=false, each with its own name and peer URL and the same
// initial cluster, token and bump), the revision agreed, every member swapped in, etcd started
// with its usual flags; then rolled back with rollback --if-swapped.
func TestMultiMemberRestore(t *testing.T) {
	en := newEnv(t)
	for _, v := range []string{framework.EtcdVersion35, framework.EtcdVersion36, framework.EtcdVersion} {
		t.Run(v, func(t *testing.T) {
			f := newMMFixture(t, en, v, "mm-"+strings.NewReplacer("v", "", ".", "-").Replace(v))
			c := f.c
			rev, staged, restage := c.stageAll(t, en, f.key)
			if len(restage) > 0 {
				t.Errorf("members %v were staged again: every member had the same data, so the same revision", restage)
			}
			for i, r := range staged {
				if diff := cmp.Diff([]any{jobspec.StateStaged, datadir.StagedDir(c.members[i].dataDir), f.snapshotRev, f.latestRevision, rev},
					[]any{r.State, r.StagedDir, r.Revision, r.RevisionBefore, r.RestoredRevision}); diff != "" {
					t.Errorf("%s: staged restore [state stagedDir revision revisionBefore restoredRevision] mismatch (-want +got):\n%s", c.members[i].name, diff)
				}
			}
			if want := f.latestRevision + jobspec.DefaultBumpRevision; rev != want {
				t.Errorf("agreed revision %d, want %d: the newest revision served before + the margin", rev, want)
			}
			swapped := c.swapAll(t, en, rev)
			for i, r := range swapped {
				if diff := cmp.Diff([]any{jobspec.StateSwapped, c.members[i].dataDir + datadir.PreviousSuffix, rev, rev - f.snapshotRev},
					[]any{r.State, r.PreviousDataDir, r.RestoredRevision, r.BumpRevision}); diff != "" {
					t.Errorf("%s: swap [state previousDataDir restoredRevision bumpRevision] mismatch (-want +got):\n%s", c.members[i].name, diff)
				}
			}
			// A retried swap Job finds its work done.
			again := en.eachMember(t, []int{0}, func(i int) []string {
				return jobspec.Swap{DataDir: c.members[i].dataDir, RestoredRevision: rev}.Args()
			})[0]
			if diff := cmp.Diff([]any{0, jobspec.StateAlreadySwapped}, []any{again.code, again.result.State}); diff != "" {
				t.Errorf("retried swap [code state] mismatch (-want +got):\n%s", diff)
			}

			c.start(t)
			c.checkCluster(t, f.snapshotKeys, rev)
			c.stop(t)

			// etcd did not become ready (say): every member back on its old data.
			if diff := cmp.Diff([]string{jobspec.StateRolledBack, jobspec.StateRolledBack, jobspec.StateRolledBack}, c.rollbackAll(t, en)); diff != "" {
				t.Errorf("rollback states mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{jobspec.StateAlreadyRolledBack, jobspec.StateAlreadyRolledBack, jobspec.StateAlreadyRolledBack}, c.rollbackAll(t, en)); diff != "" {
				t.Errorf("second rollback states mismatch (-want +got):\n%s", diff)
			}
			c.start(t)
			c.checkCluster(t, f.latestKeys, f.latestRevision)
		})
	}
}

// TestMultiMemberRestoreQuorumLost restores a 3-member etcd whose two members lost their data
// directories (no quorum): the two are staged below the survivor's revision, staged again at the
// agreed revision, and the cluster comes back whole on the snapshot.
func TestMultiMemberRestoreQuorumLost(t *testing.T) {
	en := newEnv(t)
	for _, v := range []string{framework.EtcdVersion35, framework.EtcdVersion36, framework.EtcdVersion} {
		t.Run(v, func(t *testing.T) {
			f := newMMFixture(t, en, v, "mmq-"+strings.NewReplacer("v", "", ".", "-").Replace(v))
			c := f.c
			for _, m := range c.members[1:] {
				if err := os.RemoveAll(m.dataDir); err != nil {
					t.Fatal(err)
				}
			}
			rev, staged, restage := c.stageAll(t, en, f.key)
			if diff := cmp.Diff([]int{1, 2}, restage); diff != "" {
				t.Errorf("members staged again mismatch (-want +got):\n%s", diff)
			}
			if want := f.latestRevision + jobspec.DefaultBumpRevision; rev != want {
				t.Errorf("agreed revision %d, want %d: the survivor's revision + the margin", rev, want)
			}
			for i, r := range staged {
				if r.RestoredRevision != rev {
					t.Errorf("%s staged at %d, want %d", c.members[i].name, r.RestoredRevision, rev)
				}
			}
			swapped := c.swapAll(t, en, rev)
			if diff := cmp.Diff([]string{c.members[0].dataDir + datadir.PreviousSuffix, "", ""},
				[]string{swapped[0].PreviousDataDir, swapped[1].PreviousDataDir, swapped[2].PreviousDataDir}); diff != "" {
				t.Errorf("previous generations mismatch (-want +got):\n%s", diff)
			}
			c.start(t)
			c.checkCluster(t, f.snapshotKeys, rev)
		})
	}
}

// TestMultiMemberRestoreOneFails fails one member's staged restore (its download is corrupted on
// the way): nothing is swapped on any member, rollback --if-swapped discards the others' staged
// restores, and the cluster starts again on its old data.
func TestMultiMemberRestoreOneFails(t *testing.T) {
	en := newEnv(t)
	corrupting := newCorruptingProxy(t, en.loc.Endpoint)
	for _, v := range []string{framework.EtcdVersion35, framework.EtcdVersion36, framework.EtcdVersion} {
		t.Run(v, func(t *testing.T) {
			f := newMMFixture(t, en, v, "mmf-"+strings.NewReplacer("v", "", ".", "-").Replace(v))
			c := f.c
			digests := func() []string {
				var d []string
				for _, m := range c.members {
					d = append(d, dirDigest(t, m.dataDir)+"/"+dirDigest(t, m.dataDir+datadir.PreviousSuffix)+"/"+dirDigest(t, datadir.StagedDir(m.dataDir)))
				}
				return d
			}
			before := digests()
			jobs := en.eachMember(t, allMembers(3), func(i int) []string {
				endpoint := en.loc.Endpoint
				if i == 2 {
					endpoint = corrupting
				}
				return c.stageArgs(f.key, endpoint, en.loc, i, 0)
			})
			if diff := cmp.Diff([]int{0, 0, int(jobspec.ExitIntegrity)}, []int{jobs[0].code, jobs[1].code, jobs[2].code}); diff != "" {
				t.Fatalf("staged restores' exit codes mismatch (-want +got):\n%s\nstderr of the last: %s", diff, jobs[2].stderr)
			}
			t.Logf("%s's staged restore failed: %s", c.members[2].name, strings.TrimSpace(jobs[2].stderr))
			if _, _, err := jobspec.AgreeRevision([]jobspec.Result{jobs[0].result, jobs[1].result, jobs[2].result}); err == nil {
				t.Fatal("AgreeRevision accepted a failed member")
			}
			for i, m := range c.members {
				if _, err := os.Stat(m.dataDir + datadir.PreviousSuffix); err == nil {
					t.Errorf("%s: a previous generation appeared: something was swapped", c.members[i].name)
				}
			}
			// Nothing to swap: the controller undoes what was staged and starts etcd again.
			if diff := cmp.Diff([]string{jobspec.StateDiscarded, jobspec.StateDiscarded, jobspec.StateNotSwapped}, c.rollbackAll(t, en)); diff != "" {
				t.Errorf("rollback states mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, digests()); diff != "" {
				t.Errorf("data directories changed (-want +got):\n%s", diff)
			}
			c.start(t)
			c.checkCluster(t, f.latestKeys, f.latestRevision)
		})
	}
}

// newCorruptingProxy is an S3 endpoint in front of target that flips one byte of every snapshot
// object it serves, as a bad disk or network would.
func newCorruptingProxy(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the request is signed for the proxy's host
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.Method == http.MethodGet && strings.HasSuffix(resp.Request.URL.Path, ".db") && resp.StatusCode/100 == 2 {
				resp.Body = &flipReader{r: resp.Body, at: 5000}
			}
			return nil
		},
	}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return s.URL
}

// flipReader inverts the byte at offset at of r.
type flipReader struct {
	r   io.ReadCloser
	at  int64
	off int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

// BenchmarkMultiMemberRestore times the Job-side data path of restoring a 20 MB snapshot
// (KDC_BENCH_SIZES_MB) into 3 members beside 1 member, in the same run: the 3 members' staged
// restores (restore --swap=false) in parallel, then their 3 swaps in parallel, as the controller
// runs them; 1 member the same way, and with today's single restore Job. Iterations rotate the
// order of the three runs; the medians of the iterations' own ratios are reported too.
//
//	KDC_BENCH_SIZES_MB=20 go test ./test/datapath/ -run '^$' -bench BenchmarkMultiMemberRestore -benchtime 5x
func BenchmarkMultiMemberRestore(b *testing.B) {
	sizes := benchSizes
	if os.Getenv("KDC_BENCH_SIZES_MB") == "" {
		sizes = []int{20}
	}
	for _, mb := range sizes {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) {
			en := newBenchEnv(b)
			e := benchEtcd(b, mb)
			bk := en.benchRun(b, append([]string{"backup", "--cluster", "bench", "--endpoints", e.ClientURL,
				"--cacert", e.Certs.CAFile, "--cert", e.Certs.ClientCert, "--key", e.Certs.ClientKey}, en.s3Args()...)...)
			key, _ := bk.term["key"].(string)
			if err := e.Stop(); err != nil {
				b.Fatal(err)
			}
			loc := en.loc
			loc.Prefix = "tenants"
			// members restores n members into fresh volumes: staged in parallel, then swapped in
			// parallel; it returns the time of each step.
			members := func(n int) (stage, swap, cpu time.Duration) {
				c := &mmCluster{version: framework.EtcdVersion, token: "bench"}
				var peers []string
				dir := b.TempDir()
				for i := range n {
					m := &mmMember{name: fmt.Sprintf("ds-etcd-%d", i), dataDir: filepath.Join(dir, strconv.Itoa(i), "default.etcd"),
						peerURL: fmt.Sprintf("https://ds-etcd-%d.ds-etcd.ns.svc:2380", i)}
					if err := os.MkdirAll(filepath.Dir(m.dataDir), 0o700); err != nil {
						b.Fatal(err)
					}
					c.members = append(c.members, m)
					peers = append(peers, m.name+"="+m.peerURL)
				}
				c.initialCluster = strings.Join(peers, ",")
				start := time.Now()
				for _, j := range en.eachMember(b, allMembers(n), func(i int) []string { return c.stageArgs(key, loc.Endpoint, loc, i, 0) }) {
					if j.code != 0 {
						b.Fatalf("staged restore exited %d: %s", j.code, j.stderr)
					}
					cpu += j.cpu
				}
				stage = time.Since(start)
				start = time.Now()
				for _, j := range en.eachMember(b, allMembers(n), func(i int) []string { return jobspec.Swap{DataDir: c.members[i].dataDir}.Args() }) {
					if j.code != 0 {
						b.Fatalf("swap exited %d: %s", j.code, j.stderr)
					}
					cpu += j.cpu
				}
				swap = time.Since(start)
				os.RemoveAll(dir)
				return stage, swap, cpu
			}
			var single, one, three, threeStage, threeSwap, cpuSingle, cpuOne, cpuThree time.Duration
			var ratios, ratiosStaged []float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var dSingle, dOne, dThree time.Duration
				runRotated(i, []func(){
					func() {
						dir := b.TempDir()
						start := time.Now()
						j := en.eachMember(b, []int{0}, func(int) []string {
							return append([]string{"restore", "--key", key, "--data-dir", filepath.Join(dir, "default.etcd")}, en.s3Args()...)
						})[0]
						if j.code != 0 {
							b.Fatalf("restore exited %d: %s", j.code, j.stderr)
						}
						cpuSingle += j.cpu
						dSingle = time.Since(start)
						os.RemoveAll(dir)
					},
					func() {
						st, sw, cpu := members(1)
						dOne, cpuOne = st+sw, cpuOne+cpu
					},
					func() {
						st, sw, cpu := members(3)
						dThree, cpuThree = st+sw, cpuThree+cpu
						threeStage, threeSwap = threeStage+st, threeSwap+sw
					},
				})
				single, one, three = single+dSingle, one+dOne, three+dThree
				ratios = append(ratios, dThree.Seconds()/dSingle.Seconds())
				ratiosStaged = append(ratiosStaged, dThree.Seconds()/dOne.Seconds())
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(single.Seconds()/n, "s/1-member-restore")
			b.ReportMetric(one.Seconds()/n, "s/1-member-staged+swap")
			b.ReportMetric(three.Seconds()/n, "s/3-members")
			b.ReportMetric(threeStage.Seconds()/n, "s/3-members-stage")
			b.ReportMetric(threeSwap.Seconds()/n, "s/3-members-swap")
			b.ReportMetric(cpuSingle.Seconds()/n, "s-cpu/1-member-restore")
			b.ReportMetric(cpuOne.Seconds()/n, "s-cpu/1-member-staged+swap")
			b.ReportMetric(cpuThree.Seconds()/n, "s-cpu/3-members")
			b.ReportMetric(median(ratios), "x-1-member-restore-median")
			b.ReportMetric(median(ratiosStaged), "x-1-member-staged-median")
		})
	}
}

// BenchmarkMemberStop times how a 3-member etcd (TLS, every member on loopback) stops on SIGTERM,
// as StoppingEtcd can stop it (docs/restore.md, "Multi-member datastores"): one member at a time,
// the highest first, each once the previous has exited, and all together. It reports the time of
// each member's exit and marks the leader; a fresh cluster per order and iteration.
//
//	go test ./test/datapath/ -run '^$' -bench BenchmarkMemberStop -benchtime 3x -v
func BenchmarkMemberStop(b *testing.B) {
	for _, v := range []string{framework.EtcdVersion35, framework.EtcdVersion36, framework.EtcdVersion} {
		b.Run(v, func(b *testing.B) {
			var oneByOne, together time.Duration
			for i := 0; i < b.N; i++ {
				d, line := stopMembers(b, v, false)
				b.Logf("%s one at a time: %s", v, line)
				oneByOne += d
				d, line = stopMembers(b, v, true)
				b.Logf("%s together: %s", v, line)
				together += d
			}
			b.ReportMetric(oneByOne.Seconds()/float64(b.N), "one-at-a-time-s")
			b.ReportMetric(together.Seconds()/float64(b.N), "together-s")
		})
	}
}

// stopMembers starts a 3-member cluster, sends SIGTERM to its members one at a time or together,
// and returns the time until the last one exited and each one's exit time.
func stopMembers(b *testing.B, version string, together bool) (time.Duration, string) {
	c := newMMCluster(b, version, 3)
	c.start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.members[0].cli.Status(ctx, c.members[0].clientURL)
	if err != nil {
		b.Fatal(err)
	}
	leader := make([]bool, len(c.members))
	for i, m := range c.members {
		mst, err := m.cli.Status(ctx, m.clientURL)
		if err != nil {
			b.Fatal(err)
		}
		leader[i] = mst.Header.MemberId == st.Leader
		m.cli.Close()
		m.cli = nil
	}
	exited := make([]time.Duration, len(c.members))
	var wg sync.WaitGroup
	start := time.Now()
	for i := len(c.members) - 1; i >= 0; i-- {
		m := c.members[i]
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		wg.Go(func() {
			<-m.done
			exited[i] = time.Since(start)
		})
		if !together {
			<-m.done
		}
	}
	wg.Wait()
	for _, m := range c.members {
		m.cmd = nil
	}
	var parts []string
	for i, d := range exited {
		p := fmt.Sprintf("%s exited at %s", c.members[i].name, d.Round(10*time.Millisecond))
		if leader[i] {
			p += " (leader)"
		}
		parts = append(parts, p)
	}
	return slices.Max(exited), strings.Join(parts, ", ")
}
