package controller

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// finishSuccess ends a successful restore, each step idempotent so a restart repeats it safely:
//
//  1. start a fresh backup (a Job from the CronJob C-etcd-backup, when it exists) so the next
//     restore can start from the restored state;
//  2. delete the restore and verify Jobs;
//  3. RestoreReady=True/Succeeded `Restore from "<key>" complete`, latestRestoreKey/Time;
//  4. clear restore-from and every bookkeeping annotation.
func (r *RestoreReconciler) finishSuccess(ctx context.Context, s *restoreScope) error {
	c := s.cluster
	if err := r.startFreshBackup(ctx, s); err != nil {
		return err
	}
	if err := r.deleteRestoreJob(ctx, c.DataStoreNamespace(), kdcv1alpha1.RestoreJobName(c.Name), metav1.DeletePropagationBackground); err != nil {
		return err
	}
	if err := r.deleteRestoreJob(ctx, c.Namespace, kdcv1alpha1.VerifyJobName(c.Name), metav1.DeletePropagationBackground); err != nil {
		return err
	}
	key := s.key()
	msg := fmt.Sprintf("Restore from %q complete", key)
	if err := r.patchStatus(ctx, s, func(c *kdcv1alpha1.KdcCluster) {
		setCondition(c, kdcv1alpha1.ConditionRestoreReady, metav1.ConditionTrue, kdcv1alpha1.ReasonRestoreSucceeded, msg)
		c.Status.LatestRestoreKey = key
		c.Status.LatestRestoreTime = &metav1.Time{Time: s.now}
	}); err != nil {
		return err
	}
	restoreObservePhase(s.phase(), s.now.Sub(s.phaseSince()))
	if err := r.clearRestoreAnnotations(ctx, s); err != nil {
		return err
	}
	s.finished = true
	restoreFinished(kdcv1alpha1.ReasonRestoreSucceeded, "")
	s.log.Info("Restore succeeded", "key", key, "reason", kdcv1alpha1.ReasonRestoreSucceeded)
	r.event(s, corev1.EventTypeNormal, kdcv1alpha1.ReasonRestoreSucceeded, "%s", msg)
	return nil
}

// startFreshBackup creates the Job restoreFreshBackupJobName from the CronJob C-etcd-backup, if
// the CronJob exists (backups enabled); the name is fixed per restore, so it is created once.
func (r *RestoreReconciler) startFreshBackup(ctx context.Context, s *restoreScope) error {
	c := s.cluster
	cj := &batchv1.CronJob{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: kdcv1alpha1.BackupCronJobName(c.Name)}, cj); err != nil {
		if apierrors.IsNotFound(err) {
			s.log.Info("No backup CronJob; no fresh backup after the restore", "cronJob", kdcv1alpha1.BackupCronJobName(c.Name))
			return nil
		}
		return fmt.Errorf("failed to get CronJob %s/%s: %w", c.Namespace, kdcv1alpha1.BackupCronJobName(c.Name), err)
	}
	job := buildRestoreFreshBackupJob(c, cj, s.attempt())
	if err := r.Client.Create(ctx, job); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("failed to create the fresh backup Job %s: %w", klog.KObj(job), err)
	}
	s.log.Info("Started a fresh backup", "job", klog.KObj(job))
	r.event(s, corev1.EventTypeNormal, "BackupStarted", "Started backup Job %s/%s from the restored state", job.Namespace, job.Name)
	return nil
}
