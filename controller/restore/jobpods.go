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

// The restore's Jobs are decided from their terminal pods (engine/joboutcome.go), so their full
// pods are cached here, and only theirs.

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
