// Package enginetest holds the fixtures of the restore engine's tests and its drivers' tests.
package enginetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

const (
	// NS, ClusterName, DS, Key and Image name the fixtures' objects.
	NS          = "tenant"
	ClusterName = "prod"
	DS          = "ds"
	Key         = "prod/prod-20260101T020000Z.db"
	Image       = "kdc-etcd-backup:v1"
)

// Start is when the restore of the fixtures starts.
var Start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Scheme is the scheme of the fixtures.
func Scheme(t testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, kdcv1alpha1.AddToScheme, obcv1alpha1.AddToScheme, kamajiv1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// EtcdStatefulSet is DS-etcd as a Kamaji-style datastore runs it.
func EtcdStatefulSet(ns, ds string, replicas int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kdcv1alpha1.EtcdStatefulSetName(ds)},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(replicas),
			ServiceName: kdcv1alpha1.EtcdStatefulSetName(ds),
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": ds + "-etcd"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": ds + "-etcd"}},
				Spec: corev1.PodSpec{
					SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), FSGroup: ptr.To[int64](1000)},
					Containers: []corev1.Container{{
						Name:    "etcd",
						Image:   "etcd:3.5.21-0",
						Command: []string{"etcd"},
						Args: []string{
							"--data-dir=/var/run/etcd/default.etcd",
							"--name=$(POD_NAME)",
							"--initial-advertise-peer-urls=https://$(POD_NAME).ds-etcd.$(POD_NAMESPACE).svc:2380",
							"--initial-cluster=$(POD_NAME)=https://$(POD_NAME).ds-etcd.$(POD_NAMESPACE).svc:2380",
							"--initial-cluster-token=kamaji",
						},
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "etcd-data", MountPath: "/var/run/etcd"}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "etcd-data"}}},
		},
	}
}

// ControlPlane is C-cp, a plain Deployment of an API server.
func ControlPlane(ns, cluster string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": cluster + "-cp"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kdcv1alpha1.ControlPlaneDeploymentName(cluster)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "kube-apiserver:v1.33.0"}}},
			},
		},
	}
}

// Cluster is a KdcCluster of datastore ds with annotations.
func Cluster(ns, name, ds string, annotations map[string]string) *kdcv1alpha1.KdcCluster {
	return &kdcv1alpha1.KdcCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Annotations: annotations, Generation: 1},
		Spec:       kdcv1alpha1.KdcClusterSpec{DataStore: kdcv1alpha1.DataStoreRef{Name: ds}},
		Status:     kdcv1alpha1.KdcClusterStatus{DataStoreName: ds},
	}
}

// KamajiControlPlane makes C-cp among objs owned by a Kamaji TenantControlPlane of the same name
// asking for its replicas, paused when paused, and adds the TCP.
func KamajiControlPlane(objs []client.Object, paused bool) []client.Object {
	for _, o := range objs {
		d, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		tcp := &kamajiv1alpha1.TenantControlPlane{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name, UID: "uid-tcp"}}
		tcp.Spec.ControlPlane.Deployment.Replicas = ptr.To(replicasOf(d.Spec.Replicas))
		if paused {
			tcp.Annotations = map[string]string{kamajiv1alpha1.AnnotationPaused: "maintenance"}
		}
		tcp.SetGroupVersionKind(kamajiv1alpha1.GroupVersion.WithKind("TenantControlPlane"))
		d.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(tcp, tcp.GroupVersionKind())}
		return append(objs, tcp)
	}
	return objs
}

// SharedDataStore makes the datastore among objs shared: another KdcCluster uses it, and it runs
// replicas members.
func SharedDataStore(objs []client.Object, replicas int32) []client.Object {
	for _, o := range objs {
		switch t := o.(type) {
		case *kdcv1alpha1.KdcClusterDatastore:
			t.Spec.Etcd.Replicas = replicas
			t.Status.ReferenceCount = 2
		case *appsv1.StatefulSet:
			t.Spec.Replicas = ptr.To(replicas)
		}
	}
	return append(objs, Cluster(NS, "other", DS, nil))
}

// ThreeMembers makes the dedicated datastore among objs run 3 members started in parallel, each
// with the same --initial-cluster.
func ThreeMembers(objs []client.Object, policy appsv1.PodManagementPolicyType) []client.Object {
	for _, o := range objs {
		switch t := o.(type) {
		case *kdcv1alpha1.KdcClusterDatastore:
			t.Spec.Etcd.Replicas = 3
		case *appsv1.StatefulSet:
			t.Spec.Replicas = ptr.To[int32](3)
			t.Spec.PodManagementPolicy = policy
			// etcd's /health answers only with a quorum.
			t.Spec.Template.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(2381)}}}
			args := t.Spec.Template.Spec.Containers[0].Args
			for i, a := range args {
				if strings.HasPrefix(a, "--initial-cluster=") {
					var peers []string
					for m := range 3 {
						name := fmt.Sprintf("%s-%d", t.Name, m)
						peers = append(peers, fmt.Sprintf("%s=https://%s.%s.$(POD_NAMESPACE).svc:2380", name, name, t.Name))
					}
					args[i] = "--initial-cluster=" + strings.Join(peers, ",")
				}
			}
		}
	}
	return objs
}
