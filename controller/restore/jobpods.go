package restore

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// The outcome of the restore's Jobs is read from their pods as soon as a pod is terminal, not
// only from the Job's Complete/Failed condition: kube-controller-manager's Job controller batches
// pod updates (about 1 s) before it sets the condition, which cost ~1 s per Job (verify, restore)
// on every restore. The condition stays the fallback, and is still what every pod-less case
// (Job deleted, pods garbage-collected, a failure the pods cannot prove final) waits for.

// newJobPodCache is a cache of the full pods of the restore's Jobs only (label
// app.kubernetes.io/component=etcd-restore, every namespace): the manager's own pod watch is
// metadata-only, which carries no phase or exit code.
func newJobPodCache(mgr manager.Manager) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:       mgr.GetHTTPClient(),
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: {
			Label: labels.SelectorFromSet(labels.Set{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentRestore}),
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create the restore Job pod cache: %w", err)
	}
	return c, nil
}

// jobPodFinished passes the pod events that can decide a Job: a pod seen terminal (also
// the initial list after a restart) or becoming terminal.
func jobPodFinished() predicate.TypedFuncs[*corev1.Pod] {
	terminal := func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	return predicate.TypedFuncs[*corev1.Pod]{
		CreateFunc: func(e event.TypedCreateEvent[*corev1.Pod]) bool { return terminal(e.Object) },
		UpdateFunc: func(e event.TypedUpdateEvent[*corev1.Pod]) bool {
			return terminal(e.ObjectNew) && !terminal(e.ObjectOld)
		},
		DeleteFunc: func(event.TypedDeleteEvent[*corev1.Pod]) bool { return false },
	}
}
