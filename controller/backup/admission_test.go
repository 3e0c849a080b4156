package backup

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

func TestBackupAdmission(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	job := func(name string, createdSec int, suspended bool, finished batchv1.JobConditionType) *batchv1.Job {
		j := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name),
				CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(createdSec) * time.Second)),
				Labels:            map[string]string{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup}},
			Spec: batchv1.JobSpec{Suspend: ptr.To(suspended)},
		}
		if finished != "" {
			j.Status.Conditions = []batchv1.JobCondition{{Type: finished, Status: corev1.ConditionTrue}}
		}
		return j
	}
	restoreJob := job("verify", 0, true, "")
	restoreJob.Labels[kdcv1alpha1.LabelComponent] = kdcv1alpha1.ComponentRestore
	tests := []struct {
		name        string
		max         int
		jobs        []*batchv1.Job
		wantStarted []string
		wantEvents  int
	}{
		{"no limit starts every waiting Job", 0,
			[]*batchv1.Job{job("a", 0, true, ""), job("b", 1, true, "")}, []string{"a", "b"}, 0},
		{"oldest first up to the limit", 2,
			[]*batchv1.Job{job("c", 2, true, ""), job("a", 0, true, ""), job("b", 1, true, ""), job("d", 1, true, "")},
			[]string{"a", "b"}, 2},
		{"running Jobs take their slots", 2,
			[]*batchv1.Job{job("run", 0, false, ""), job("a", 1, true, ""), job("b", 2, true, "")}, []string{"a"}, 1},
		{"finished Jobs free their slots", 2,
			[]*batchv1.Job{job("ok", 0, false, batchv1.JobComplete), job("bad", 0, false, batchv1.JobFailed), job("a", 1, true, ""), job("b", 2, true, "")},
			[]string{"a", "b"}, 0},
		{"full: nothing starts, each waiting Job is told once", 1,
			[]*batchv1.Job{job("run", 0, false, ""), job("a", 1, true, ""), job("b", 2, true, "")}, nil, 2},
		{"restore Jobs are not backups", 1, []*batchv1.Job{restoreJob}, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs []client.Object
			for _, j := range tc.jobs {
				objs = append(objs, j)
			}
			cl := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(objs...).
				WithIndex(&batchv1.Job{}, backupJobActiveIndex, backupJobActive).Build()
			rec := events.NewFakeRecorder(100)
			a := &Admission{Client: cl, Recorder: rec, Max: tc.max}
			for range 2 { // a second pass changes nothing and tells nobody twice
				if _, err := a.Reconcile(context.Background(), backupAdmissionRequest); err != nil {
					t.Fatal(err)
				}
			}
			var started []string
			var list batchv1.JobList
			if err := cl.List(context.Background(), &list); err != nil {
				t.Fatal(err)
			}
			for _, j := range list.Items {
				was := map[string]bool{}
				for _, o := range tc.jobs {
					was[o.Name] = *o.Spec.Suspend
				}
				if was[j.Name] && !*j.Spec.Suspend {
					started = append(started, j.Name)
				}
			}
			sort.Strings(started)
			if diff := cmp.Diff(tc.wantStarted, started); diff != "" {
				t.Errorf("started Jobs mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantEvents, len(rec.Events)); diff != "" {
				t.Errorf("BackupWaiting Events mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackupJobActive(t *testing.T) {
	backup := func(mut func(*batchv1.Job)) *batchv1.Job {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j",
			Labels: map[string]string{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup}}}
		mut(j)
		return j
	}
	finished := func(c batchv1.JobConditionType) func(*batchv1.Job) {
		return func(j *batchv1.Job) {
			j.Status.Conditions = []batchv1.JobCondition{{Type: c, Status: corev1.ConditionTrue}}
		}
	}
	tests := []struct {
		name string
		job  client.Object
		want []string
	}{
		{"running", backup(func(*batchv1.Job) {}), []string{"true"}},
		{"waiting (suspended)", backup(func(j *batchv1.Job) { j.Spec.Suspend = ptr.To(true) }), []string{"true"}},
		{"complete", backup(finished(batchv1.JobComplete)), nil},
		{"failed", backup(finished(batchv1.JobFailed)), nil},
		{"being deleted", backup(func(j *batchv1.Job) { j.DeletionTimestamp = ptr.To(metav1.Now()) }), nil},
		{"a restore Job", backup(func(j *batchv1.Job) { j.Labels[kdcv1alpha1.LabelComponent] = kdcv1alpha1.ComponentRestore }), nil},
		{"not a Job", &corev1.Pod{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, backupJobActive(tc.job)); diff != "" {
				t.Errorf("index values (-want +got):\n%s", diff)
			}
		})
	}
}
