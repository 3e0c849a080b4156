package env

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// Backup is a finished backup Job.
type Backup struct {
	Job      string
	Key      string
	Duration time.Duration
	// Report is the Job's termination message (key, size, sha256, revision, ...).
	Report map[string]any
}

// RunBackup starts a backup now, as `kubectl create job --from=cronjob/C-etcd-backup NAME`
// does, waits until the Job succeeded and the controller recorded a new
// status.latestBackupKey, and returns it.
func (t *Tenant) RunBackup(ctx context.Context, job string) (*Backup, error) {
	e := t.env
	before, err := t.KdcCluster(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	out, err := e.Kubectl(ctx, "create", "job", "-n", t.Namespace, "--from=cronjob/"+kdcv1alpha1.BackupCronJobName(t.Cluster), job)
	if err != nil {
		return nil, fmt.Errorf("kubectl create job: %w: %s", err, out)
	}
	b := &Backup{Job: job}
	err = poll(ctx, 3*time.Minute, 100*time.Millisecond, func() error {
		var j batchv1.Job
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: job}, &j); err != nil {
			return err
		}
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				return permanent(fmt.Errorf("backup Job %s failed: %s: %s", job, c.Reason, c.Message))
			}
		}
		if j.Status.Succeeded < 1 {
			return fmt.Errorf("backup Job %s has not succeeded yet", job)
		}
		kc, err := t.KdcCluster(ctx)
		if err != nil {
			return err
		}
		if kc.Status.LatestBackupKey == "" || kc.Status.LatestBackupKey == before.Status.LatestBackupKey {
			return fmt.Errorf("status.latestBackupKey not updated yet (%q)", kc.Status.LatestBackupKey)
		}
		b.Key = kc.Status.LatestBackupKey
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w; pods:\n%s", err, e.describePods(ctx, t.Namespace))
	}
	b.Duration = time.Since(start)
	var pods corev1.PodList
	if err := e.Client.List(ctx, &pods, client.InNamespace(t.Namespace), client.MatchingLabels{"job-name": job}); err == nil {
		for _, p := range pods.Items {
			for _, cs := range p.Status.ContainerStatuses {
				if tm := cs.State.Terminated; tm != nil && tm.ExitCode == 0 {
					_ = json.Unmarshal([]byte(tm.Message), &b.Report)
				}
			}
		}
	}
	return b, nil
}

// KdcCluster returns the KdcCluster.
func (t *Tenant) KdcCluster(ctx context.Context) (*kdcv1alpha1.KdcCluster, error) {
	var kc kdcv1alpha1.KdcCluster
	err := t.env.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.Cluster}, &kc)
	return &kc, err
}

// Annotate runs `kubectl annotate --overwrite kdccluster C kube-dc.com/restore-from=KEY` and
// returns kubectl's output; err is set when kubectl failed (a rejection).
func (t *Tenant) Annotate(ctx context.Context, key string) (string, error) {
	out, err := t.env.Kubectl(ctx, "annotate", "--overwrite", "-n", t.Namespace, "kdccluster", t.Cluster,
		kdcv1alpha1.AnnotationRestoreFrom+"="+key)
	return strings.TrimSpace(out), err
}

// GetKdcCluster is `kubectl get kdccluster -n NS` (the printer columns).
func (t *Tenant) GetKdcCluster(ctx context.Context) (string, error) {
	return t.env.Kubectl(ctx, "get", "kdccluster", "-n", t.Namespace)
}

// PhaseTiming is when a restore entered a phase, as seen by a watch.
type PhaseTiming struct {
	Phase kdcv1alpha1.RestorePhase
	At    time.Time
	// ResourceVersion is the KdcCluster's in that event; ControlPlaneWatch orders events by it.
	ResourceVersion int64
}

// Restore is the outcome of a restore.
type Restore struct {
	Key string
	// Start is just before `kubectl annotate`; End when the watch saw the restore finish.
	Start, End time.Time
	// EndResourceVersion is the KdcCluster's in the event that showed the end.
	EndResourceVersion int64
	Phases             []PhaseTiming
	// Condition is RestoreReady at the end.
	Condition metav1.Condition
	Cluster   *kdcv1alpha1.KdcCluster
}

// RTO is annotate -> RestoreReady=True (or False).
func (r *Restore) RTO() time.Duration { return r.End.Sub(r.Start) }

// PhaseNames are the phases seen, in order.
func (r *Restore) PhaseNames() []string {
	var out []string
	for _, p := range r.Phases {
		out = append(out, string(p.Phase))
	}
	return out
}

// PhaseDurations is each phase's duration; the first (Validating) counts from the annotate.
func (r *Restore) PhaseDurations() []PhaseDuration {
	var out []PhaseDuration
	for i, p := range r.Phases {
		from := p.At
		if i == 0 {
			from = r.Start
		}
		to := r.End
		if i+1 < len(r.Phases) {
			to = r.Phases[i+1].At
		}
		out = append(out, PhaseDuration{Phase: p.Phase, Duration: to.Sub(from)})
	}
	return out
}

// PhaseDuration is the time spent in a phase.
type PhaseDuration struct {
	Phase    kdcv1alpha1.RestorePhase
	Duration time.Duration
}

// RestoreOptions tune StartRestore.
type RestoreOptions struct {
	// OnPhase is called, from the watching goroutine, at each phase the restore enters.
	OnPhase func(PhaseTiming)
	// Timeout bounds the whole restore; default 5 minutes.
	Timeout time.Duration
}

// RunningRestore is a restore that was admitted; Wait waits for its end.
type RunningRestore struct {
	r      *Restore
	done   chan struct{}
	err    error
	Output string // kubectl annotate's output
}

// StartRestore watches the KdcCluster, runs `kubectl annotate` with key and returns once the
// request was admitted; the watch records each phase until the restore ends. A rejected request
// returns kubectl's output in the error.
func (t *Tenant) StartRestore(ctx context.Context, key string, o RestoreOptions) (*RunningRestore, error) {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	wc, err := client.NewWithWatch(t.env.Mgmt.Config, client.Options{Scheme: framework.Scheme})
	if err != nil {
		return nil, err
	}
	var list kdcv1alpha1.KdcClusterList
	if err := wc.List(ctx, &list, client.InNamespace(t.Namespace)); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	w, err := wc.Watch(wctx, &kdcv1alpha1.KdcClusterList{}, client.InNamespace(t.Namespace),
		client.MatchingFields{"metadata.name": t.Cluster}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		cancel()
		return nil, err
	}
	rr := &RunningRestore{r: &Restore{Key: key}, done: make(chan struct{})}
	rr.r.Start = time.Now()
	out, err := t.Annotate(ctx, key)
	rr.Output = out
	if err != nil {
		w.Stop()
		cancel()
		return nil, fmt.Errorf("restore request rejected: %s", out)
	}
	go func() {
		defer close(rr.done)
		defer cancel()
		defer w.Stop()
		seen := false
		last := kdcv1alpha1.RestorePhase("")
		for {
			var ev watch.Event
			var ok bool
			select {
			case ev, ok = <-w.ResultChan():
			case <-wctx.Done():
				if ctx.Err() != nil {
					rr.err = fmt.Errorf("restore from %q interrupted in phase %s: %w", key, last, ctx.Err())
					return
				}
				rr.err = fmt.Errorf("restore from %q did not finish within %s (phases seen %v)", key, o.Timeout, rr.r.PhaseNames())
				return
			}
			if !ok {
				rr.err = fmt.Errorf("watch of KdcCluster %s ended before the restore finished", t.Cluster)
				return
			}
			kc, isKC := ev.Object.(*kdcv1alpha1.KdcCluster)
			if !isKC {
				continue
			}
			now := time.Now()
			phase := kdcv1alpha1.RestorePhaseOf(kc.Annotations)
			if phase != "" && phase != last {
				last = phase
				seen = true
				pt := PhaseTiming{Phase: phase, At: now, ResourceVersion: resourceVersion(kc)}
				rr.r.Phases = append(rr.r.Phases, pt)
				if o.OnPhase != nil {
					o.OnPhase(pt)
				}
			}
			if seen && phase == "" && kc.Annotations[kdcv1alpha1.AnnotationRestoreFrom] == "" {
				rr.r.End = now
				rr.r.EndResourceVersion = resourceVersion(kc)
				rr.r.Cluster = kc
				if c := meta.FindStatusCondition(kc.Status.Conditions, kdcv1alpha1.ConditionRestoreReady); c != nil {
					rr.r.Condition = *c
				}
				return
			}
		}
	}()
	return rr, nil
}

// Wait waits until the restore ended and returns its outcome.
func (rr *RunningRestore) Wait() (*Restore, error) {
	<-rr.done
	return rr.r, rr.err
}

// Restore runs a restore from key to its end.
func (t *Tenant) Restore(ctx context.Context, key string, o RestoreOptions) (*Restore, error) {
	rr, err := t.StartRestore(ctx, key, o)
	if err != nil {
		return nil, err
	}
	return rr.Wait()
}

// CorruptSnapshot flips one byte in the middle of the snapshot object through the S3 API,
// keeping its metadata (so the recorded checksum no longer matches).
func (t *Tenant) CorruptSnapshot(ctx context.Context, key string) error {
	s3c := t.env.S3()
	bucket := kdcv1alpha1.DefaultBucketName(t.Namespace)
	obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("failed to get %s: %w", key, err)
	}
	data, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		return err
	}
	data[len(data)/2] ^= 0xff
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		Metadata: obj.Metadata, ContentType: obj.ContentType,
	})
	if err != nil {
		return fmt.Errorf("failed to put the corrupted %s: %w", key, err)
	}
	return nil
}

// SnapshotSize is the size of the snapshot object in the bucket.
func (t *Tenant) SnapshotSize(ctx context.Context, key string) (int64, error) {
	h, err := t.env.S3().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(kdcv1alpha1.DefaultBucketName(t.Namespace)), Key: aws.String(key)})
	if err != nil {
		return 0, err
	}
	return aws.ToInt64(h.ContentLength), nil
}

// PutConfigMap creates or replaces ConfigMap ns/name in the tenant through its kube-apiserver.
func (t *Tenant) PutConfigMap(ctx context.Context, ns, name string, data map[string]string) error {
	return poll(ctx, time.Minute, 200*time.Millisecond, func() error {
		cms := t.Kube.CoreV1().ConfigMaps(ns)
		cur, err := cms.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Data = data
		_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

// ConfigMap reads ConfigMap ns/name from the tenant's kube-apiserver; found is false when the
// tenant answers NotFound. Transient errors (the control plane restarting) are retried.
func (t *Tenant) ConfigMap(ctx context.Context, ns, name string) (data map[string]string, found bool, err error) {
	err = poll(ctx, time.Minute, 200*time.Millisecond, func() error {
		cm, err := t.Kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		data, found = cm.Data, true
		return nil
	})
	return data, found, err
}

// Pad writes about size bytes of ConfigMaps into the tenant's namespace ns through its
// kube-apiserver (900 KiB each), so its etcd holds a realistic amount of data.
func (t *Tenant) Pad(ctx context.Context, ns string, size int) (int, error) {
	if _, err := t.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return 0, err
	}
	const chunk = 900 << 10
	blob := strings.Repeat("kube-dc etcd backup padding. ", chunk/29+1)[:chunk]
	n := 0
	for written := 0; written < size; written += chunk {
		if err := t.PutConfigMap(ctx, ns, fmt.Sprintf("pad-%03d", n), map[string]string{"blob": blob}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// WaitRestoreEnd waits until no restore runs on the KdcCluster (restore-from and restore-state
// cleared) and returns it.
func (t *Tenant) WaitRestoreEnd(ctx context.Context, timeout time.Duration) (*kdcv1alpha1.KdcCluster, error) {
	var kc *kdcv1alpha1.KdcCluster
	err := poll(ctx, timeout, 100*time.Millisecond, func() error {
		var err error
		if kc, err = t.KdcCluster(ctx); err != nil {
			return err
		}
		if p := kdcv1alpha1.RestorePhaseOf(kc.Annotations); p != "" || kc.Annotations[kdcv1alpha1.AnnotationRestoreFrom] != "" {
			return fmt.Errorf("restore of KdcCluster %s still running (phase %q)", t.Cluster, p)
		}
		return nil
	})
	return kc, err
}
