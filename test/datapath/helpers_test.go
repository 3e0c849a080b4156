package datapath

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/datadir"
	"kube-dc.com/etcd-backup/test/framework"
)

const bucket = "ns-managed-k8s-backups"

// env is one MinIO with the backup bucket.
type env struct {
	minio *framework.MinIO
	loc   snapshot.S3Location
	cred  snapshot.Credentials
	s3    *s3.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	m := framework.StartMinIO(t, framework.MinIOOptions{Buckets: []string{bucket}})
	return &env{
		minio: m,
		loc:   snapshot.S3Location{Endpoint: m.Endpoint, Bucket: bucket},
		cred:  snapshot.Credentials{AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey},
		s3:    m.S3Client(),
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// backupOptions is a backup of etcd e for cluster into the env's bucket.
func (en *env) backupOptions(t *testing.T, e *framework.EtcdServer, cluster string) snapshot.BackupOptions {
	return snapshot.BackupOptions{
		Cluster:       cluster,
		Endpoints:     []string{e.ClientURL},
		CACert:        e.Certs.CAFile,
		Cert:          e.Certs.ClientCert,
		Key:           e.Certs.ClientKey,
		Location:      en.loc,
		Credentials:   en.cred,
		RetentionDays: 7,
		Logger:        testLogger(t),
	}
}

func (en *env) restoreOptions(t *testing.T, key, dataDir string, peerPort int) datadir.RestoreOptions {
	return datadir.RestoreOptions{
		Restore: jobspec.Restore{
			Key:           key,
			Location:      en.loc,
			Member:        jobspec.Member{DataDir: dataDir, Name: "default", PeerURLs: []string{framework.PeerURLFor(peerPort)}},
			BumpRevision:  jobspec.DefaultBumpRevision,
			MarkCompacted: true,
		},
		Credentials: en.cred,
		Logger:      testLogger(t),
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fill writes n keys under prefix with values of size bytes, several per transaction.
func fill(t testing.TB, cli *clientv3.Client, prefix string, n, size int) {
	t.Helper()
	perTxn := max(1, min(64, (1<<20)/max(size, 1)))
	for i := 0; i < n; i += perTxn {
		var ops []clientv3.Op
		for j := i; j < min(n, i+perTxn); j++ {
			v := make([]byte, size)
			for k := range v {
				v[k] = byte('a' + (j+k)%26)
			}
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%06d", prefix, j), string(v)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := cli.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			t.Fatalf("failed to write keys: %v", err)
		}
	}
}

// contents is every key of etcd with the SHA-256 of its value, and the store revision.
func contents(t testing.TB, cli *clientv3.Client) (map[string]string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatalf("failed to read etcd: %v", err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		s := sha256.Sum256(kv.Value)
		out[string(kv.Key)] = hex.EncodeToString(s[:8])
	}
	return out, resp.Header.Revision
}

// objectKeys lists the bucket.
func (en *env) objectKeys(t *testing.T) []string {
	t.Helper()
	out, err := en.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("failed to list the bucket: %v", err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// dirDigest is a digest of every file's path, mode and content under root ("" when absent),
// to prove a failed restore left a data directory exactly as it was.
func dirDigest(t *testing.T, root string) string {
	t.Helper()
	if _, err := os.Stat(root); os.IsNotExist(err) {
		return ""
	}
	h := sha256.New()
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", strings.TrimPrefix(p, root), fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("failed to digest %s: %v", root, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
