package framework

import (
	"context"
	"fmt"
	"path/filepath"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Operator ClusterRoles of manifests/rbac/operator_roles.yaml.
const (
	OperatorClusterRole      = "kdc-etcd-backup-operator"
	ManualRestoreClusterRole = "kdc-etcd-backup-manual-restore"
)

// ApplyOperatorRoles applies manifests/rbac/operator_roles.yaml (the ClusterRoles of
// `kubectl kdc` users) with the built kubectl.
func (e *Env) ApplyOperatorRoles(ctx context.Context) error {
	out, err := e.Kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(RootDir(), "manifests", "rbac", "operator_roles.yaml"))
	if err != nil {
		return fmt.Errorf("failed to apply the operator roles: %w: %s", err, out)
	}
	return nil
}

// BindClusterRole binds user to clusterRole in namespace with a RoleBinding (idempotent).
func (e *Env) BindClusterRole(ctx context.Context, user, clusterRole, namespace string) error {
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: user + "-" + clusterRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := e.Client.Create(ctx, rb); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to bind %s to %s in %s: %w", user, clusterRole, namespace, err)
	}
	return nil
}
