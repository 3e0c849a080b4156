package plugin

import (
	"context"
	"errors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// errWaitTimeout is returned by waitFor when its context's deadline passes.
var errWaitTimeout = errors.New("timed out")

// waitFor watches the one object key of objType's kind (a list, then a watch that is re-listed
// when it expires) and calls check with its current state and then with every change, in order,
// until check returns true or an error, or ctx ends. check gets nil when the object does not
// exist or was deleted.
func waitFor(ctx context.Context, c client.WithWatch, key client.ObjectKey, objType client.Object, newList func() client.ObjectList, check func(obj client.Object) (bool, error)) error {
	sel := fields.OneTermEqualSelector("metadata.name", key.Name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = sel
			list := newList()
			err := c.List(ctx, list, client.InNamespace(key.Namespace), &client.ListOptions{Raw: &opts})
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = sel
			return c.Watch(ctx, newList(), client.InNamespace(key.Namespace), &client.ListOptions{Raw: &opts})
		},
	}
	// The precondition only settles a missing object. An existing one is checked from the
	// events: the informer delivers the listed state as the first (Added) event and then every
	// change in order, whereas its store may already hold a later state than those queued events,
	// and checking the store too would replay states out of order.
	precondition := func(store cache.Store) (bool, error) {
		_, exists, err := store.GetByKey(key.String())
		if err != nil || exists {
			return false, err
		}
		return check(nil)
	}
	_, err := watchtools.UntilWithSync(ctx, lw, objType, precondition, func(ev watch.Event) (bool, error) {
		obj, ok := ev.Object.(client.Object)
		switch {
		case ev.Type == watch.Deleted:
			return check(nil)
		case (ev.Type == watch.Added || ev.Type == watch.Modified) && ok:
			return check(obj)
		}
		return false, nil
	})
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errWaitTimeout
	}
	return err
}
