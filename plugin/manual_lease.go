package plugin

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// manualLeaseDuration is the leaseDurationSeconds the manual restore holds the manager's Lease
// with; it renews every third of it.
const manualLeaseDuration = 15 * time.Second

// manualLeaseHolder is the holderIdentity of the manual restore: the manager's log names it as
// the leader it waits for.
func manualLeaseHolder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("kubectl-kdc-manual-restore_%s_%d", host, os.Getpid())
}

// holdLease takes the manager's leader-election Lease (checkManagerDown found it free or
// expired) and renews it until release is called, so a manager that starts during the manual
// restore waits for it instead of running its restore controller beside it. A conflict means the
// manager took the Lease meanwhile: refused, nothing was changed. When the manager's namespace
// does not exist (no manager installed there) it warns and goes on.
func (m *manualRun) holdLease(ctx context.Context) (release func(), err error) {
	key := client.ObjectKey{Namespace: m.f.ManagerNamespace, Name: m.f.LeaderElectionID}
	holder := manualLeaseHolder()
	now := metav1.NewMicroTime(m.o.now())
	lease := &coordinationv1.Lease{}
	switch err := m.cl.Get(ctx, key, lease); {
	case apierrors.IsNotFound(err):
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To(int32(manualLeaseDuration / time.Second)),
				AcquireTime: &now, RenewTime: &now,
			},
		}
		if err := m.cl.Create(ctx, lease); err != nil {
			if apierrors.IsNotFound(err) {
				m.warnf("namespace %q does not exist, so no manager runs there; the manual restore holds no Lease (set --manager-namespace if the manager runs elsewhere)", key.Namespace)
				return func() {}, nil
			}
			return nil, m.leaseError(key, err)
		}
	case err != nil:
		return nil, m.leaseError(key, err)
	default:
		lease.Spec.HolderIdentity = ptr.To(holder)
		lease.Spec.LeaseDurationSeconds = ptr.To(int32(manualLeaseDuration / time.Second))
		lease.Spec.AcquireTime, lease.Spec.RenewTime = &now, &now
		lease.Spec.LeaseTransitions = ptr.To(ptr.Deref(lease.Spec.LeaseTransitions, 0) + 1)
		if err := m.cl.Update(ctx, lease); err != nil {
			return nil, m.leaseError(key, err)
		}
	}
	m.logf("Holding the manager's Lease %s/%s as %q, so a manager started meanwhile waits until this restore ends", key.Namespace, key.Name, holder)

	renewCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(manualLeaseDuration / 3)
		defer tick.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-tick.C:
				if err := m.renewLease(renewCtx, key, holder, func(l *coordinationv1.Lease) {
					l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(m.o.now()))
				}); err != nil && renewCtx.Err() == nil {
					m.warnf("could not renew the manager's Lease %s/%s: %v; a manager started now may run beside this restore", key.Namespace, key.Name, err)
				}
			}
		}
	}()
	return func() {
		stop()
		wg.Wait()
		// Released like a leader that stops: no holder, expired at once.
		if err := m.renewLease(context.WithoutCancel(ctx), key, holder, func(l *coordinationv1.Lease) {
			l.Spec.HolderIdentity = ptr.To("")
			l.Spec.LeaseDurationSeconds = ptr.To[int32](1)
			l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(m.o.now()))
		}); err != nil {
			m.warnf("could not release the manager's Lease %s/%s: %v; the manager takes it over once it expires", key.Namespace, key.Name, err)
			return
		}
		m.logf("Released the manager's Lease %s/%s", key.Namespace, key.Name)
	}, nil
}

// renewLease applies mutate to the Lease if this restore still holds it.
func (m *manualRun) renewLease(ctx context.Context, key client.ObjectKey, holder string, mutate func(*coordinationv1.Lease)) error {
	lease := &coordinationv1.Lease{}
	if err := m.cl.Get(ctx, key, lease); err != nil {
		return err
	}
	if got := ptr.Deref(lease.Spec.HolderIdentity, ""); got != holder {
		return fmt.Errorf("it is held by %q now", got)
	}
	mutate(lease)
	return m.cl.Update(ctx, lease)
}

// leaseError refuses the restore when the Lease cannot be taken.
func (m *manualRun) leaseError(key client.ObjectKey, err error) error {
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("restore from %q refused, nothing was changed: the manager took its leader-election Lease %s/%s just now, so it is starting; request the restore with the annotation (kubectl kdc restore %s -n %s --from %s --wait)",
			m.key, key.Namespace, key.Name, m.c.Name, m.c.Namespace, m.key)
	}
	return fmt.Errorf("restore from %q refused, nothing was changed: cannot take the manager's leader-election Lease %s/%s to keep the manager from starting during the restore: %w (the manual restore needs get, create and update on leases there)",
		m.key, key.Namespace, key.Name, err)
}
