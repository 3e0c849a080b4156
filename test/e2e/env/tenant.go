package env

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
	"kube-dc.com/etcd-backup/test/kamaji"
)

// TenantOptions describe a tenant cluster. Zero values get the demo's names.
type TenantOptions struct {
	// Namespace is the project namespace (default "demo").
	Namespace string
	// Cluster is the KdcCluster C (default "tenant"); its control plane is Deployment C-cp.
	Cluster string
	// DataStore is the KdcClusterDatastore DS (default "ds1"); its etcd is StatefulSet DS-etcd.
	DataStore string
	// EtcdVersion is the datastore's etcd, one of framework.EtcdVersion35 (default, Kube-DC's
	// default), EtcdVersion36, EtcdVersion.
	EtcdVersion string
	// Members is the datastore's etcd member count (default 1): StatefulSet replicas,
	// spec.etcd.replicas and every member in --initial-cluster (docs/restore.md, "Multi-member datastores").
	Members int32
	// EtcdPrefix is the kube-apiserver's --etcd-prefix, set as Kamaji does: the TCP's
	// status.storage.setup.schema is the prefix without its slash. Empty: no flag (/registry), no schema.
	EtcdPrefix string
	// JoinDataStore: DataStore was created by an earlier CreateTenant in the same namespace and
	// this tenant shares its etcd; status.referenceCount counts both (docs/backup.md, "Shared datastores").
	JoinDataStore bool
}

func (o *TenantOptions) defaults() {
	if o.Namespace == "" {
		o.Namespace = "demo"
	}
	if o.Cluster == "" {
		o.Cluster = "tenant"
	}
	if o.DataStore == "" {
		o.DataStore = "ds1"
	}
	if o.EtcdVersion == "" {
		o.EtcdVersion = framework.EtcdVersion35
	}
	if o.Members == 0 {
		o.Members = 1
	}
}

// Tenant is a tenant cluster laid out as Kube-DC does: a KdcClusterDatastore with its etcd
// StatefulSet DS-etcd (Members members, client and peer TLS from Secret DS-etcd-certs, data on PVC
// etcd-data-DS-etcd-0 at /var/run/etcd/default.etcd, headless Service DS-etcd), a Kamaji
// TenantControlPlane C-cp owning the control-plane Deployment C-cp (its pods labelled
// kamaji.clastix.io/name=C-cp) running a real kube-apiserver against that etcd over TLS, bound
// to its pod address, behind Service C-cp, and the KdcCluster C.
type Tenant struct {
	TenantOptions
	// APIServer is the tenant kube-apiserver's URL: Service C-cp's ClusterIP, forwarded to a
	// ready C-cp pod.
	APIServer string
	// Kubeconfig is a kubeconfig file of the tenant's admin (system:masters).
	Kubeconfig string
	// Config is the tenant admin's rest.Config and Kube its client.
	Config *rest.Config
	Kube   kubernetes.Interface

	env *Env
}

// Tenant's fixed shape.
const (
	etcdClientPort   = 2379
	etcdPeerPort     = 2380
	etcdMetricsPort  = 2381
	apiServerPort    = 6443
	tenantUID        = 65532
	etcdPKIMountPath = "/etc/etcd/pki"
	cpPKIMountPath   = "/etc/kubernetes/pki"
	cpEtcdMountPath  = "/etc/kubernetes/etcd-pki"
)

// EtcdImage is the etcd image of version v ("v3.5.35" -> "etcd:3.5.35-0").
func EtcdImage(v string) string { return "etcd:" + strings.TrimPrefix(v, "v") + "-0" }

// CreateTenant creates the tenant cluster, sets the KdcCluster's status.dataStoreName as the
// provisioner would, and waits until its kube-apiserver answers and its backup CronJob exists.
func (e *Env) CreateTenant(ctx context.Context, o TenantOptions) (*Tenant, error) {
	o.defaults()
	ns, ds, c := o.Namespace, o.DataStore, o.Cluster
	if o.JoinDataStore {
		// The shared datastore's etcd is the one an earlier tenant created.
		var existing kdcv1alpha1.KdcClusterDatastore
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: ds}, &existing); err != nil {
			return nil, fmt.Errorf("KdcClusterDatastore %s to join: %w", ds, err)
		}
		o.EtcdVersion, o.Members = existing.Spec.Etcd.Version, existing.Spec.Etcd.Replicas
	}
	t := &Tenant{TenantOptions: o, env: e}
	etcdName, cpName := kdcv1alpha1.EtcdStatefulSetName(ds), kdcv1alpha1.ControlPlaneDeploymentName(c)
	etcdLabels := map[string]string{"app.kubernetes.io/name": "etcd", "app.kubernetes.io/instance": etcdName, "kube-dc.com/datastore": ds}
	// Kamaji selects the pods by kamaji.clastix.io/name (internal/builders/controlplane/deployment.go).
	cpLabels := map[string]string{"app.kubernetes.io/name": "kube-apiserver", "app.kubernetes.io/instance": cpName, "kube-dc.com/cluster": c,
		kamajiv1alpha1.LabelName: cpName}

	// Services first: the control plane's ClusterIP goes into its serving certificate.
	etcdSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: etcdName, Labels: etcdLabels},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 etcdLabels,
			Ports: []corev1.ServicePort{
				{Name: "client", Port: etcdClientPort, TargetPort: intstr.FromInt32(etcdClientPort)},
				{Name: "peer", Port: etcdPeerPort, TargetPort: intstr.FromInt32(etcdPeerPort)},
			},
		},
	}
	cpSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cpName, Labels: cpLabels},
		Spec: corev1.ServiceSpec{
			Selector: cpLabels,
			Ports:    []corev1.ServicePort{{Name: "https", Port: apiServerPort, TargetPort: intstr.FromInt32(apiServerPort)}},
		},
	}
	services := []*corev1.Service{etcdSvc, cpSvc}
	if o.JoinDataStore {
		services = services[1:]
	}
	for _, s := range services {
		if err := e.Client.Create(ctx, s); err != nil {
			return nil, fmt.Errorf("failed to create Service %s: %w", s.Name, err)
		}
	}
	t.APIServer = "https://" + net.JoinHostPort(cpSvc.Spec.ClusterIP, fmt.Sprint(apiServerPort))

	// PKI: etcd's CA (server, peer and client certificates) and the control plane's.
	etcdCA, err := newCA(etcdName + "-ca")
	if err != nil {
		return nil, err
	}
	var etcdSANs []string
	for _, d := range []string{etcdName, etcdName + "." + ns, etcdName + "." + ns + ".svc", etcdName + "." + ns + ".svc.cluster.local"} {
		etcdSANs = append(etcdSANs, d, "*."+d)
	}
	etcdSANs = append(etcdSANs, "localhost", "127.0.0.1")
	etcdServer, err := etcdCA.issue(etcdName, nil, etcdSANs...)
	if err != nil {
		return nil, err
	}
	etcdClient, err := etcdCA.issue("root", nil)
	if err != nil {
		return nil, err
	}
	cpCA, err := newCA(c + "-ca")
	if err != nil {
		return nil, err
	}
	cpServing, err := cpCA.issue("kube-apiserver", nil, cpName, cpName+"."+ns, cpName+"."+ns+".svc", cpName+"."+ns+".svc.cluster.local",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost",
		cpSvc.Spec.ClusterIP, "127.0.0.1", "10.96.0.1")
	if err != nil {
		return nil, err
	}
	admin, err := cpCA.issue("kubernetes-admin", []string{"system:masters"})
	if err != nil {
		return nil, err
	}
	saKey, saPub, err := serviceAccountKeys()
	if err != nil {
		return nil, err
	}
	secrets := []*corev1.Secret{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kdcv1alpha1.EtcdCertsSecretName(ds), Labels: etcdLabels},
			Type:       corev1.SecretTypeOpaque,
			Data: map[string][]byte{
				kdcv1alpha1.EtcdCertsCAKey:   etcdCA.certPEM,
				kdcv1alpha1.EtcdCertsCertKey: etcdClient.Cert,
				kdcv1alpha1.EtcdCertsKeyKey:  etcdClient.Key,
				"server.crt":                 etcdServer.Cert,
				"server.key":                 etcdServer.Key,
				"peer.crt":                   etcdServer.Cert,
				"peer.key":                   etcdServer.Key,
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cpName + "-certs", Labels: cpLabels},
			Type:       corev1.SecretTypeOpaque,
			Data: map[string][]byte{
				"ca.crt": cpCA.certPEM, "apiserver.crt": cpServing.Cert, "apiserver.key": cpServing.Key,
				"sa.key": saKey, "sa.pub": saPub,
			},
		},
	}
	if o.JoinDataStore {
		secrets = secrets[1:]
	}
	for _, s := range secrets {
		if err := e.Client.Create(ctx, s); err != nil {
			return nil, fmt.Errorf("failed to create Secret %s: %w", s.Name, err)
		}
	}

	if !o.JoinDataStore {
		dsObj := &kdcv1alpha1.KdcClusterDatastore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ds},
			Spec:       kdcv1alpha1.KdcClusterDatastoreSpec{Etcd: kdcv1alpha1.EtcdSpec{Replicas: o.Members, Version: o.EtcdVersion}},
		}
		if err := e.Client.Create(ctx, dsObj); err != nil {
			return nil, fmt.Errorf("failed to create KdcClusterDatastore %s: %w", ds, err)
		}
		if err := e.Client.Create(ctx, etcdStatefulSet(ns, ds, o.EtcdVersion, o.Members, etcdLabels)); err != nil {
			return nil, fmt.Errorf("failed to create StatefulSet %s: %w", etcdName, err)
		}
	}
	// Kamaji creates C-cp with its TCP as controller (internal/resources/k8s_deployment_resource.go).
	tcp := kamaji.TenantControlPlane(ns, cpName, 1)
	if err := e.Client.Create(ctx, tcp); err != nil {
		return nil, fmt.Errorf("failed to create TenantControlPlane %s: %w", cpName, err)
	}
	if o.EtcdPrefix != "" {
		// Kamaji records the prefix it runs the kube-apiserver with (docs/backup.md, "Shared datastores").
		tcp.Status.Storage.Setup.Schema = strings.TrimPrefix(o.EtcdPrefix, "/")
		tcp.Status.Storage.DataStoreName = ds
		if err := e.Client.Status().Update(ctx, tcp); err != nil {
			return nil, fmt.Errorf("failed to set status.storage.setup.schema of TenantControlPlane %s: %w", cpName, err)
		}
	}
	cp := controlPlaneDeployment(ns, c, ds, o.Members, o.EtcdPrefix, cpLabels)
	if err := controllerutil.SetControllerReference(tcp, cp, framework.Scheme); err != nil {
		return nil, err
	}
	if err := e.Client.Create(ctx, cp); err != nil {
		return nil, fmt.Errorf("failed to create Deployment %s: %w", cpName, err)
	}
	// On teardown the control plane goes first: stopped together with etcd, kube-apiserver
	// waits for etcd until the node agent's grace period (10s) ends.
	e.onStop("tenant control plane "+ns+"/"+cpName, func() error { return e.scaleToZero(ns, cpName, cpLabels) })
	cluster := &kdcv1alpha1.KdcCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: c},
		Spec: kdcv1alpha1.KdcClusterSpec{
			DataStore:    kdcv1alpha1.DataStoreRef{Name: ds},
			ControlPlane: kdcv1alpha1.ControlPlaneSpec{Replicas: ptr.To[int32](1)},
		},
	}
	if err := e.Client.Create(ctx, cluster); err != nil {
		return nil, fmt.Errorf("failed to create KdcCluster %s: %w", c, err)
	}
	// The cluster provisioner records the datastore once the control plane is provisioned.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"status":{"dataStoreName":"`+ds+`"}}`))
	if err := e.Client.Status().Patch(ctx, cluster, patch); err != nil {
		return nil, fmt.Errorf("failed to set status.dataStoreName of KdcCluster %s: %w", c, err)
	}
	if o.JoinDataStore {
		n, err := e.countDataStoreUsers(ctx, ns, ds)
		if err != nil {
			return nil, err
		}
		e.logf("tenant %s/%s: TenantControlPlane %s (--etcd-prefix=%s) owning Deployment %s, KdcCluster %s created on the shared KdcClusterDatastore %s (status.referenceCount %d)", ns, c, cpName, o.EtcdPrefix, cpName, c, ds, n)
	} else {
		e.logf("tenant %s/%s: KdcClusterDatastore %s (etcd %s, %d member(s)), StatefulSet %s, TenantControlPlane %s owning Deployment %s, KdcCluster %s created", ns, c, ds, o.EtcdVersion, o.Members, etcdName, cpName, cpName, c)
	}

	if t.Config, t.Kubeconfig, err = t.writeKubeconfig(cpCA.certPEM, admin); err != nil {
		return nil, err
	}
	if t.Kube, err = kubernetes.NewForConfig(t.Config); err != nil {
		return nil, err
	}
	if err := t.WaitReady(ctx, 3*time.Minute); err != nil {
		return nil, err
	}
	err = poll(ctx, time.Minute, 100*time.Millisecond, func() error {
		var kc kdcv1alpha1.KdcCluster
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: c}, &kc); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(kc.Status.Conditions, kdcv1alpha1.ConditionBackupReady)
		if cond == nil {
			return fmt.Errorf("no BackupReady condition on KdcCluster %s yet", c)
		}
		return e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: kdcv1alpha1.BackupCronJobName(c)}, &batchv1.CronJob{})
	})
	if err != nil {
		return nil, fmt.Errorf("the backup controller did not create CronJob %s: %w", kdcv1alpha1.BackupCronJobName(c), err)
	}
	e.logf("tenant kube-apiserver ready at %s; CronJob %s created by the backup controller", t.APIServer, kdcv1alpha1.BackupCronJobName(c))
	return t, nil
}

// WaitReady waits until DS-etcd and C-cp are ready and the tenant's kube-apiserver answers
// /readyz through its Service.
func (t *Tenant) WaitReady(ctx context.Context, timeout time.Duration) error {
	e := t.env
	etcdName, cpName := kdcv1alpha1.EtcdStatefulSetName(t.DataStore), kdcv1alpha1.ControlPlaneDeploymentName(t.Cluster)
	err := poll(ctx, timeout, 100*time.Millisecond, func() error {
		var sts appsv1.StatefulSet
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: etcdName}, &sts); err != nil {
			return err
		}
		if sts.Status.ReadyReplicas < t.Members {
			return fmt.Errorf("etcd StatefulSet %s: %d/%d members ready", etcdName, sts.Status.ReadyReplicas, t.Members)
		}
		var d appsv1.Deployment
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: cpName}, &d); err != nil {
			return err
		}
		if d.Status.ReadyReplicas < 1 {
			return fmt.Errorf("control-plane Deployment %s not ready", cpName)
		}
		body, err := t.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("tenant kube-apiserver /readyz: %w (%s)", err, body)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tenant cluster not ready: %w; pods:\n%s", err, e.describePods(ctx, t.Namespace))
	}
	return nil
}

// writeKubeconfig writes the tenant admin's kubeconfig next to the environment's logs.
func (t *Tenant) writeKubeconfig(caPEM []byte, admin keyPair) (*rest.Config, string, error) {
	cfg := &rest.Config{
		Host:            t.APIServer,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM, CertData: admin.Cert, KeyData: admin.Key},
		QPS:             200, Burst: 400,
		Timeout: 30 * time.Second,
	}
	name := t.Namespace + "-" + t.Cluster
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: t.APIServer, CertificateAuthorityData: caPEM}
	kc.AuthInfos[name+"-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: admin.Cert, ClientKeyData: admin.Key}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name + "-admin"}
	kc.CurrentContext = name
	path := filepath.Join(t.env.Dir, name+".kubeconfig")
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, "", err
	}
	return cfg, path, os.WriteFile(path, data, 0o600)
}

// etcdStatefulSet is DS-etcd as Kube-DC (Kamaji-style) runs it: members members (Parallel), each
// named after its pod and listed in every member's --initial-cluster, peer and client URLs by
// the pod's DNS name under the headless Service, listening on the pod's address, TLS from
// DS-etcd-certs, data in the etcd-data claim at /var/run/etcd/default.etcd.
func etcdStatefulSet(ns, ds, version string, members int32, labels map[string]string) *appsv1.StatefulSet {
	name := kdcv1alpha1.EtcdStatefulSetName(ds)
	peer := func(pod string) string {
		return fmt.Sprintf("https://%s.%s.%s.svc.cluster.local:%d", pod, name, ns, etcdPeerPort)
	}
	pki := func(f string) string { return etcdPKIMountPath + "/" + f }
	var initial []string
	for i := range members {
		pod := fmt.Sprintf("%s-%d", name, i)
		initial = append(initial, pod+"="+peer(pod))
	}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(members),
			ServiceName:         name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](tenantUID),
						RunAsGroup: ptr.To[int64](tenantUID), FSGroup: ptr.To[int64](tenantUID),
					},
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					AutomountServiceAccountToken:  ptr.To(false),
					Containers: []corev1.Container{{
						Name:    "etcd",
						Image:   EtcdImage(version),
						Command: []string{"etcd"},
						Args: []string{
							"--name=$(POD_NAME)",
							"--data-dir=" + kdcv1alpha1.EtcdDataDir,
							fmt.Sprintf("--listen-client-urls=https://$(POD_IP):%d", etcdClientPort),
							fmt.Sprintf("--advertise-client-urls=https://$(POD_NAME).%s.$(POD_NAMESPACE).svc.cluster.local:%d", name, etcdClientPort),
							fmt.Sprintf("--listen-peer-urls=https://$(POD_IP):%d", etcdPeerPort),
							fmt.Sprintf("--initial-advertise-peer-urls=https://$(POD_NAME).%s.$(POD_NAMESPACE).svc.cluster.local:%d", name, etcdPeerPort),
							"--initial-cluster=" + strings.Join(initial, ","),
							"--initial-cluster-state=new",
							"--initial-cluster-token=" + name,
							fmt.Sprintf("--listen-metrics-urls=http://$(POD_IP):%d", etcdMetricsPort),
							"--client-cert-auth=true",
							"--trusted-ca-file=" + pki(kdcv1alpha1.EtcdCertsCAKey),
							"--cert-file=" + pki("server.crt"),
							"--key-file=" + pki("server.key"),
							"--peer-client-cert-auth=true",
							"--peer-trusted-ca-file=" + pki(kdcv1alpha1.EtcdCertsCAKey),
							"--peer-cert-file=" + pki("peer.crt"),
							"--peer-key-file=" + pki("peer.key"),
							"--snapshot-count=10000",
							"--quota-backend-bytes=8589934592",
							"--auto-compaction-mode=periodic",
							"--auto-compaction-retention=5m",
							"--log-level=warn",
						},
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
						},
						Ports: []corev1.ContainerPort{
							{Name: "client", ContainerPort: etcdClientPort},
							{Name: "peer", ContainerPort: etcdPeerPort},
							{Name: "metrics", ContainerPort: etcdMetricsPort},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromString("metrics")}},
							PeriodSeconds: 5, FailureThreshold: 3,
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "etcd-data", MountPath: kdcv1alpha1.EtcdDataMountPath},
							{Name: "etcd-certs", MountPath: etcdPKIMountPath, ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{{
						Name:         "etcd-certs",
						VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: kdcv1alpha1.EtcdCertsSecretName(ds), DefaultMode: ptr.To[int32](0o440)}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "etcd-data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				},
			}},
		},
	}
}

// controlPlaneDeployment is C-cp: a real kube-apiserver on the pod's address against DS-etcd
// over TLS, with its certificates and service account keys from Secret C-cp-certs.
func controlPlaneDeployment(ns, c, ds string, members int32, etcdPrefix string, labels map[string]string) *appsv1.Deployment {
	name := kdcv1alpha1.ControlPlaneDeploymentName(c)
	etcdSts := kdcv1alpha1.EtcdStatefulSetName(ds)
	var servers []string
	for i := range members {
		servers = append(servers, fmt.Sprintf("https://%s-%d.%s.%s.svc.cluster.local:%d", etcdSts, i, etcdSts, ns, etcdClientPort))
	}
	var prefixFlag []string
	if etcdPrefix != "" {
		prefixFlag = []string{"--etcd-prefix=" + etcdPrefix}
	}
	pki := func(f string) string { return cpPKIMountPath + "/" + f }
	etcdPKI := func(f string) string { return cpEtcdMountPath + "/" + f }
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					// The kube-apiserver image runs as root.
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					AutomountServiceAccountToken:  ptr.To(false),
					Containers: []corev1.Container{{
						Name:    "kube-apiserver",
						Image:   "kube-apiserver:" + framework.KubeVersion,
						Command: []string{"kube-apiserver"},
						Args: append([]string{
							"--advertise-address=$(POD_IP)",
							"--bind-address=$(POD_IP)",
							fmt.Sprintf("--secure-port=%d", apiServerPort),
							"--etcd-servers=" + strings.Join(servers, ","),
							"--etcd-cafile=" + etcdPKI(kdcv1alpha1.EtcdCertsCAKey),
							"--etcd-certfile=" + etcdPKI(kdcv1alpha1.EtcdCertsCertKey),
							"--etcd-keyfile=" + etcdPKI(kdcv1alpha1.EtcdCertsKeyKey),
							"--client-ca-file=" + pki("ca.crt"),
							"--tls-cert-file=" + pki("apiserver.crt"),
							"--tls-private-key-file=" + pki("apiserver.key"),
							"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
							"--service-account-key-file=" + pki("sa.pub"),
							"--service-account-signing-key-file=" + pki("sa.key"),
							"--service-cluster-ip-range=10.96.0.0/16",
							"--authorization-mode=RBAC",
							"--allow-privileged=true",
							// The tenant's own "kubernetes" Endpoints would carry a loopback address,
							// which Endpoints validation rejects.
							"--endpoint-reconciler-type=none",
							"--profiling=false",
						}, prefixFlag...),
						Env: []corev1.EnvVar{
							{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
						},
						Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: apiServerPort}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: "/readyz", Port: intstr.FromString("https"), Scheme: corev1.URISchemeHTTPS,
							}},
							PeriodSeconds: 5, FailureThreshold: 3,
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "pki", MountPath: cpPKIMountPath, ReadOnly: true},
							{Name: "etcd-certs", MountPath: cpEtcdMountPath, ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "pki", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name + "-certs", DefaultMode: ptr.To[int32](0o440)}}},
						{Name: "etcd-certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: kdcv1alpha1.EtcdCertsSecretName(ds), DefaultMode: ptr.To[int32](0o440)}}},
					},
				},
			},
		},
	}
}

// scaleToZero pauses TCP ns/name, scales Deployment ns/name to 0 and waits (20s) for its pods to go.
func (e *Env) scaleToZero(ns, name string, labels map[string]string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Unpaused, the stand-in would scale the Deployment back as Kamaji does.
	pause := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+kamajiv1alpha1.AnnotationPaused+`":"teardown"}}}`))
	if err := e.Client.Patch(ctx, &kamajiv1alpha1.TenantControlPlane{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, pause); client.IgnoreNotFound(err) != nil {
		return err
	}
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":0}}`))
	if err := e.Client.Patch(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	return poll(ctx, 20*time.Second, 100*time.Millisecond, func() error {
		var pods corev1.PodList
		if err := e.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods of Deployment %s left", len(pods.Items), name)
		}
		return nil
	})
}

// countDataStoreUsers sets status.referenceCount of KdcClusterDatastore ns/ds to the number of
// KdcClusters on it, as Kube-DC does, and returns it.
func (e *Env) countDataStoreUsers(ctx context.Context, ns, ds string) (int32, error) {
	var clusters kdcv1alpha1.KdcClusterList
	if err := e.Client.List(ctx, &clusters, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	var n int32
	for _, kc := range clusters.Items {
		if kc.DataStore() == ds {
			n++
		}
	}
	patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"status":{"referenceCount":%d}}`, n)))
	if err := e.Client.Status().Patch(ctx, &kdcv1alpha1.KdcClusterDatastore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ds}}, patch); err != nil {
		return 0, fmt.Errorf("failed to set status.referenceCount of KdcClusterDatastore %s: %w", ds, err)
	}
	return n, nil
}
