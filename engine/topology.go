package engine

import (
	"fmt"
	"path"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// Mode is how a cluster's data is backed up and restored (docs/restore.md, "Shared datastores").
type Mode string

const (
	// ModeWholeEtcd: the datastore is dedicated to the cluster; backups are etcd snapshots and a
	// restore replaces the whole data directory.
	ModeWholeEtcd Mode = "whole-etcd"
	// ModePrefix: the datastore is shared; backups and restores touch the cluster's key prefix
	// only, through the etcd API, with etcd up for everyone.
	ModePrefix Mode = "prefix"
)

// DefaultEtcdPrefix is the kube-apiserver's --etcd-prefix when the flag is absent.
const DefaultEtcdPrefix = "/registry"

// ModeOf decides the mode of cluster c on datastore ds: dedicated when spec.dataStore.dedicated
// is true, or when c is the only KdcCluster resolving to ds (users lists them all) and ds counts
// at most one user (status.referenceCount); shared otherwise.
func ModeOf(c *kdcv1alpha1.KdcCluster, ds *kdcv1alpha1.KdcClusterDatastore, users []kdcv1alpha1.KdcCluster) (Mode, string) {
	if c.Spec.DataStore.Dedicated {
		return ModeWholeEtcd, "spec.dataStore.dedicated is true"
	}
	var others []string
	for i := range users {
		u := &users[i]
		if u.UID == c.UID && u.Namespace == c.Namespace && u.Name == c.Name {
			continue
		}
		if u.DataStoreNamespace() == c.DataStoreNamespace() && u.DataStore() == c.DataStore() {
			others = append(others, u.Namespace+"/"+u.Name)
		}
	}
	if len(others) > 0 {
		return ModePrefix, fmt.Sprintf("KdcClusters %s share KdcClusterDatastore %s/%s", strings.Join(others, ", "), c.DataStoreNamespace(), c.DataStore())
	}
	if ds != nil && ds.Status.ReferenceCount > 1 {
		return ModePrefix, fmt.Sprintf("KdcClusterDatastore %s/%s counts %d users (status.referenceCount)", ds.Namespace, ds.Name, ds.Status.ReferenceCount)
	}
	return ModeWholeEtcd, fmt.Sprintf("the only user of KdcClusterDatastore %s/%s", c.DataStoreNamespace(), c.DataStore())
}

// EtcdPrefixOf is the key prefix the tenant's kube-apiserver uses, taken where the
// kube-apiserver takes it: the TenantControlPlane's status.storage.setup.schema when a TCP owns
// C-cp (Kamaji runs the kube-apiserver with --etcd-prefix=/<schema>), else C-cp's kube-apiserver
// --etcd-prefix, else /registry. A prefix that cannot be determined is an error, never a guess.
func EtcdPrefixOf(d *appsv1.Deployment, tcp *kamajiv1alpha1.TenantControlPlane) (string, error) {
	if tcp != nil {
		schema := strings.Trim(tcp.Status.Storage.Setup.Schema, "/")
		if schema == "" {
			return "", fmt.Errorf("TenantControlPlane %s/%s reports no status.storage.setup.schema yet; wait until Kamaji has set up its datastore", tcp.Namespace, tcp.Name)
		}
		return checkPrefix("/" + schema)
	}
	ctr := apiServerContainer(d.Spec.Template.Spec.Containers)
	if ctr == nil {
		return "", fmt.Errorf("deployment %s/%s has no kube-apiserver container to read --etcd-prefix from", d.Namespace, d.Name)
	}
	flags := parseFlags(append(append([]string{}, ctr.Command...), ctr.Args...))
	p, ok := flags["etcd-prefix"]
	if !ok {
		return DefaultEtcdPrefix, nil
	}
	if strings.Contains(p, "$") {
		return "", fmt.Errorf("--etcd-prefix %q of container %q refers to a variable; cannot resolve it", p, ctr.Name)
	}
	return checkPrefix(p)
}

// checkPrefix accepts an absolute, clean key prefix other than "/".
func checkPrefix(p string) (string, error) {
	p = strings.TrimRight(p, "/")
	if !strings.HasPrefix(p, "/") || p == "" || path.Clean(p) != p {
		return "", fmt.Errorf("etcd prefix %q is not an absolute, clean key prefix", p)
	}
	return p, nil
}

// apiServerContainer is the container named kube-apiserver, or whose command is, or the only one.
func apiServerContainer(cs []corev1.Container) *corev1.Container {
	for i := range cs {
		if cs[i].Name == "kube-apiserver" {
			return &cs[i]
		}
	}
	for i := range cs {
		if len(cs[i].Command) > 0 && path.Base(cs[i].Command[0]) == "kube-apiserver" {
			return &cs[i]
		}
	}
	if len(cs) == 1 {
		return &cs[0]
	}
	return nil
}
