package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
)

// A multi-member datastore is restored in place (docs/restore.md, "Multi-member datastores"):
// every member's data volume is staged from the same snapshot (one Job per member, in
// parallel), the members agree on one restored revision (those below it are staged again at
// it), and only then is every member swapped in; a failure rolls every member back.

// memberJobs ensures the Job of kind for every member (members restaged at restored when
// restage lists them) and reports the Jobs and whether all succeeded, one failed (its detail),
// or some still run.
func (e *Engine) memberJobs(ctx context.Context, r *Restore, p *Plan, kind JobKind, restored int64, only []int) ([]*batchv1.Job, JobOutcome, string, error) {
	n := p.memberCount()
	indexes := only
	if indexes == nil {
		for i := range n {
			indexes = append(indexes, i)
		}
	}
	jobs := make([]*batchv1.Job, n)
	outcome := JobSucceeded
	for _, i := range indexes {
		m := member{index: i, count: n, restored: restored, restage: only != nil && kind == JobRestore}
		job, out, err := e.ensureJob(ctx, r, kind, p, m)
		if err != nil {
			return nil, JobPending, "", err
		}
		jobs[i] = job
		switch {
		case out == JobFailed:
			return jobs, JobFailed, e.failureDetail(ctx, job), nil
		case out == JobPending:
			outcome = JobPending
		}
	}
	return jobs, outcome, "", nil
}

// jobResult is the termination message of a succeeded Job's pod.
func (e *Engine) jobResult(ctx context.Context, job *batchv1.Job) (jobspec.Result, error) {
	pods, err := e.jobPods(ctx, job)
	if err != nil {
		return jobspec.Result{}, err
	}
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; cs.Name == ContainerName && t != nil && t.ExitCode == 0 {
				return jobspec.ParseResult(t.Message)
			}
		}
	}
	return jobspec.Result{}, fmt.Errorf("job %s/%s has no succeeded pod with a result", job.Namespace, job.Name)
}

// restoringMembers is RestoringSnapshot for a multi-member datastore:
//
//  1. stage every member (restore --swap=false, in parallel); a failure fails the restore
//     (RestoreJobFailed) with nothing swapped;
//  2. agree on the restored revision (the highest staged one) and record it; stage again, at
//     it, the members below it;
//  3. swap every member in at that revision (in parallel);
//  4. record restore-swapped and the revision and enter StartingEtcd.
func (e *Engine) restoringMembers(ctx context.Context, r *Restore, p *Plan) (step, error) {
	fail := func(detail string) (step, error) {
		return step{advanced: true}, e.Fail(ctx, r, Violation{Reason: kdcv1alpha1.ReasonRestoreJobFailed, Detail: detail})
	}
	// settled goes on once every Job of a round succeeded; a failed one fails the restore.
	settled := func(out JobOutcome, detail string, err error, what string) (step, bool, error) {
		switch {
		case err != nil:
			return step{}, false, err
		case out == JobFailed:
			st, err := fail(detail)
			return st, false, err
		case out == JobPending:
			st, err := e.wait(ctx, r, kdcv1alpha1.ReasonRestoreJobFailed, what, "")
			return st, false, err
		}
		return step{}, true, nil
	}
	staged, out, detail, err := e.memberJobs(ctx, r, p, JobRestore, 0, nil)
	if st, ok, err := settled(out, detail, err, "the members' staged restores did not finish"); !ok {
		return st, err
	}
	agreed, err := strconv.ParseInt(r.get(kdcv1alpha1.AnnotationRestoreMembersRevision), 10, 64)
	if err != nil {
		results := make([]jobspec.Result, len(staged))
		for i, job := range staged {
			if results[i], err = e.jobResult(ctx, job); err != nil {
				return fail(err.Error())
			}
		}
		revision, restage, err := jobspec.AgreeRevision(results)
		if err != nil {
			return fail(err.Error())
		}
		if err := e.save(ctx, r, map[string]string{kdcv1alpha1.AnnotationRestoreMembersRevision: strconv.FormatInt(revision, 10)}); err != nil {
			return step{}, err
		}
		agreed = revision
		if len(restage) > 0 {
			r.Driver.Note(r, fmt.Sprintf("Members %v staged below revision %d: staging them again at it", restage, revision))
		}
	}
	var restage []int
	for i, job := range staged {
		res, err := e.jobResult(ctx, job)
		if err != nil {
			return fail(err.Error())
		}
		if res.RestoredRevision != agreed {
			restage = append(restage, i)
		}
	}
	if len(restage) > 0 {
		_, out, detail, err := e.memberJobs(ctx, r, p, JobRestore, agreed, restage)
		if st, ok, err := settled(out, detail, err, "the members staged again did not finish"); !ok {
			return st, err
		}
	}
	_, out, detail, err = e.memberJobs(ctx, r, p, JobSwap, agreed, nil)
	if st, ok, err := settled(out, detail, err, "the members' swaps did not finish"); !ok {
		return st, err
	}
	extra := map[string]string{kdcv1alpha1.AnnotationRestoreSwapped: restoreTrue}
	res, err := e.jobResult(ctx, staged[0])
	rev := res.RestoreRevision()
	rev.RestoredRevision = agreed
	if err == nil && rev.Revision > 0 {
		extra[kdcv1alpha1.AnnotationRestoreRevision] = rev.String()
	}
	r.Driver.Note(r, fmt.Sprintf("All %d members restored at revision %d and swapped in (the previous data is kept beside each)", p.memberCount(), agreed))
	st, err := e.enter(ctx, r, kdcv1alpha1.PhaseStartingEtcd, extra)
	if err == nil && rev.Revision > 0 {
		r.Driver.Event(r, corev1.EventTypeNormal, revisionEventReason, "Restore from \""+r.Key()+"\": "+rev.Describe())
	}
	return st, err
}

// stopMemberJobs is recovery step 1 for a multi-member datastore: every unfinished data Job of
// this attempt is deleted (foreground) and waited for, so nothing writes a data volume while
// etcd starts.
func (e *Engine) stopMemberJobs(ctx context.Context, r *Restore, rc *recovery, p *Plan) (step, bool, error) {
	c := r.Cluster
	var jobs batchv1.JobList
	if err := e.Client.List(ctx, &jobs, client.InNamespace(c.DataStoreNamespace()), client.MatchingLabels(jobLabels(c))); err != nil {
		return step{}, false, fmt.Errorf("failed to list the restore's Jobs: %w", err)
	}
	running := false
	for i := range jobs.Items {
		job := &jobs.Items[i]
		if job.Labels[labelMember] == "" || job.Annotations[kdcv1alpha1.AnnotationRestoreAttempt] != r.Attempt() ||
			strings.Contains(job.Name, "-etcd-rollback-") || e.jobOutcome(ctx, r, job) != JobPending {
			continue
		}
		running = true
		if job.DeletionTimestamp.IsZero() {
			r.Driver.Note(r, fmt.Sprintf("Stopping the unfinished Job %s/%s", job.Namespace, job.Name), "job", klog.KObj(job))
			if err := e.Client.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationForeground)); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
				return step{}, false, fmt.Errorf("failed to delete Job %s: %w", klog.KObj(job), err)
			}
		}
	}
	if !running {
		return step{}, true, nil
	}
	if res, wait := rc.waitOr(r, "the members' restore Jobs did not stop"); wait {
		return res, false, nil
	}
	rc.keepEtcdOff = true
	return step{}, true, nil
}

// rollBackMembers is recovery step 2 for a multi-member datastore once the restore reached
// RestoringSnapshot: etcd stays stopped while every member's rollback Job (rollback
// --if-swapped) swaps back what was swapped in and discards what was only staged.
func (e *Engine) rollBackMembers(ctx context.Context, r *Restore, rc *recovery, p *Plan) (step, bool, error) {
	if err := e.scaleStatefulSet(ctx, r, rc.sts, 0); err != nil {
		return step{}, false, err
	}
	stopped, err := e.etcdStopped(ctx, r.Cluster, p.memberCount())
	if err != nil {
		return step{}, false, err
	}
	if !stopped {
		if res, wait := rc.waitOr(r, "etcd did not stop for the rollback"); wait {
			return res, false, nil
		}
		return e.recordRollback(ctx, r, rollbackFailedPrefix+"etcd did not stop")
	}
	_, out, detail, err := e.memberJobs(ctx, r, p, JobRollback, 0, nil)
	switch {
	case err != nil:
		return step{}, false, err
	case out == JobSucceeded:
		r.Driver.Event(r, corev1.EventTypeNormal, "RolledBack", fmt.Sprintf("Every member's data from before the restore is in place again (%d members)", p.memberCount()))
		r.Driver.Note(r, "Rolled back: every member's previous data is in place again")
		return e.recordRollback(ctx, r, restoreTrue)
	case out == JobFailed:
		return e.recordRollback(ctx, r, rollbackFailedPrefix+detail)
	}
	if res, wait := rc.waitOr(r, "the members' rollback Jobs did not finish"); wait {
		return res, false, nil
	}
	return e.recordRollback(ctx, r, rollbackFailedPrefix+"the members' rollback Jobs did not finish")
}
