package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/location"
)

// Plan is every input one restore needs, resolved once in Validating and recorded
// (restore-plan), so the later phases, the recovery and the Jobs run exactly what was verified.
type Plan struct {
	// Key is the snapshot key C/C-<ts>.db.
	Key string `json:"key"`
	// Image is the image of the Jobs.
	Image string `json:"image"`
	// Location is the bucket, prefix, endpoint and region, resolved like the backup CronJob's.
	Location jobspec.S3Location `json:"location"`
	// CredentialSecret holds AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	CredentialSecret string `json:"credentialSecret"`
	// Member is how DS-etcd runs its member (DeriveEtcdMember).
	Member jobspec.Member `json:"member"`
	// Members are every member of a multi-member DS-etcd, by ordinal (empty for one member).
	Members []jobspec.Member `json:"members,omitempty"`
	// RunAs is the user, group and fsGroup of etcd, so the Jobs can write its data directory.
	RunAs RunAs `json:"runAs"`
	// TargetVersion is the datastore's spec.etcd.version: the restore migrates the storage schema
	// down to it, so a snapshot of a newer etcd starts on the version DS-etcd runs.
	TargetVersion string `json:"targetVersion,omitempty"`
	// ControlPlaneOwner is C-cp's controller when the restore must pause it (a Kamaji
	// TenantControlPlane), else nil: a plain Deployment.
	ControlPlaneOwner *Owner `json:"controlPlaneOwner,omitempty"`
	// Mode is whole-etcd or prefix (ModeOf), and why.
	Mode       Mode   `json:"mode"`
	ModeReason string `json:"modeReason,omitempty"`
	// EtcdPrefix, EtcdEndpoints, EtcdCertSecret and JobNamespace are set in prefix mode: the
	// tenant's key prefix, DS-etcd's client URLs, the Secret of the client certificate and the
	// namespace of that Secret, where the prefix Jobs run.
	EtcdPrefix    string            `json:"etcdPrefix,omitempty"`
	EtcdEndpoints []string          `json:"etcdEndpoints,omitempty"`
	EtcdCerts     jobspec.EtcdCerts `json:"etcdCerts,omitempty"`
	JobNamespace  string            `json:"jobNamespace,omitempty"`
}

// restoreJobNamespace is where the restore and rollback Jobs run: beside the PVC, or in prefix
// mode beside the client certificate.
func (p *Plan) restoreJobNamespace(c *kdcv1alpha1.KdcCluster) string {
	if p.Mode == ModePrefix {
		return p.JobNamespace
	}
	return c.DataStoreNamespace()
}

// Workloads are the objects a restore drives: C-cp and DS-etcd.
type Workloads struct {
	ControlPlane *appsv1.Deployment
	Etcd         *appsv1.StatefulSet
}

// Prepare checks the request's rules and resolves its plan, changing nothing: the key
// (InvalidKey, ForeignKey), the datastore (DataStoreUnknown, MultiReplicaUnsupported), C-cp and
// DS-etcd (ObjectsMissing), the S3 location (S3NotAvailable) and the etcd member
// (EtcdMemberUnknown). A broken rule is a *Violation; other errors are reads to retry.
func (e *Engine) Prepare(ctx context.Context, c *kdcv1alpha1.KdcCluster, key string) (*Plan, *Workloads, error) {
	if v := CheckKey(c.Name, key); v != nil {
		return nil, nil, v
	}
	ds, err := e.dataStore(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	if ds == nil {
		return nil, nil, DataStoreMissing(c.DataStoreNamespace(), c.DataStore())
	}
	// The cluster's and the datastore's namespaces (least privilege for the manual restore); users
	// elsewhere are counted by the datastore's referenceCount.
	var users []kdcv1alpha1.KdcCluster
	for _, ns := range slices.Compact([]string{c.Namespace, ds.Namespace}) {
		var list kdcv1alpha1.KdcClusterList
		if err := e.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, nil, fmt.Errorf("failed to list the KdcClusters of namespace %s sharing datastore %s/%s: %w", ns, ds.Namespace, ds.Name, err)
		}
		users = append(users, list.Items...)
	}
	mode, why := ModeOf(c, ds, users)
	if mode == ModeWholeEtcd {
		if v := CheckDataStore(ds); v != nil {
			return nil, nil, v
		}
	}
	w, err := e.workloads(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	// A failed read of the claim or its ConfigMap is retried, not taken for a missing one (that
	// would resolve another bucket or endpoint).
	loc, err := location.Lookup(ctx, e.Live, c, e.S3Endpoint)
	if errors.Is(err, location.ErrNoEndpoint) {
		return nil, nil, &Violation{Reason: kdcv1alpha1.ReasonS3NotAvailable,
			Detail: fmt.Sprintf("%v: set spec.backup.s3Endpoint or make the ObjectBucketClaim %s Bound", err, kdcv1alpha1.ObjectBucketClaimName)}
	}
	if err != nil {
		return nil, nil, err
	}
	p := &Plan{
		Key:               key,
		Image:             e.Image,
		Location:          loc.S3Location,
		CredentialSecret:  location.CredentialSecret(c),
		RunAs:             RunAsOf(&w.Etcd.Spec.Template.Spec),
		TargetVersion:     ds.Spec.Etcd.Version,
		ControlPlaneOwner: controlPlaneOwner(w.ControlPlane),
	}
	p.Mode, p.ModeReason = mode, why
	if mode == ModePrefix {
		if err := e.preparePrefix(ctx, c, w, p); err != nil {
			return nil, nil, err
		}
	} else if v := CheckMembers(ds, w.Etcd); v != nil {
		return nil, nil, v
	}
	if p.Member, err = DeriveEtcdMember(w.Etcd); err != nil {
		return nil, nil, &Violation{Reason: kdcv1alpha1.ReasonEtcdMemberUnknown,
			Detail: fmt.Sprintf("StatefulSet %s: %v", klog.KObj(w.Etcd), err)}
	}
	if n := int(replicas(w.Etcd.Spec.Replicas)); mode == ModeWholeEtcd && n > 1 {
		if p.Members, err = DeriveEtcdMembers(w.Etcd, n); err != nil {
			return nil, nil, &Violation{Reason: kdcv1alpha1.ReasonEtcdMemberUnknown,
				Detail: fmt.Sprintf("StatefulSet %s: %v", klog.KObj(w.Etcd), err)}
		}
	}
	return p, w, nil
}

// encode is the recorded form of the plan.
func (p *Plan) encode() (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("failed to encode the restore plan: %w", err)
	}
	return string(b), nil
}

// recordedPlan reads the plan recorded in Validating.
func (r *Restore) recordedPlan() (*Plan, error) {
	if r.plan != nil {
		return r.plan, nil
	}
	raw := r.get(kdcv1alpha1.AnnotationRestorePlan)
	if raw == "" {
		return nil, errors.New("no restore plan is recorded")
	}
	p := &Plan{}
	if err := json.Unmarshal([]byte(raw), p); err != nil {
		return nil, fmt.Errorf("the recorded restore plan is unreadable: %w", err)
	}
	r.plan = p
	return p, nil
}

// Begin is the record a driver starts a restore of plan with when it prepared the plan itself
// (the manual restore): restore-from, Validating and the plan; the first Run stamps the rest.
func Begin(p *Plan) (map[string]string, error) {
	enc, err := p.encode()
	if err != nil {
		return nil, err
	}
	return map[string]string{
		kdcv1alpha1.AnnotationRestoreFrom:  p.Key,
		kdcv1alpha1.AnnotationRestoreState: string(kdcv1alpha1.PhaseValidating),
		kdcv1alpha1.AnnotationRestorePlan:  enc,
	}, nil
}

// dataStore returns the cluster's datastore, or nil when it does not exist (or none is named).
func (e *Engine) dataStore(ctx context.Context, c *kdcv1alpha1.KdcCluster) (*kdcv1alpha1.KdcClusterDatastore, error) {
	if c.DataStore() == "" {
		return nil, nil
	}
	ds := &kdcv1alpha1.KdcClusterDatastore{}
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: c.DataStore()}, ds)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to get KdcClusterDatastore %s/%s: %w", c.DataStoreNamespace(), c.DataStore(), err)
	}
	return ds, nil
}

// workloads returns C-cp and DS-etcd; a missing one is an ObjectsMissing *Violation.
func (e *Engine) workloads(ctx context.Context, c *kdcv1alpha1.KdcCluster) (*Workloads, error) {
	w := &Workloads{ControlPlane: &appsv1.Deployment{}, Etcd: &appsv1.StatefulSet{}}
	for _, o := range []struct {
		kind string
		obj  client.Object
		key  client.ObjectKey
	}{
		{"Deployment", w.ControlPlane, client.ObjectKey{Namespace: c.Namespace, Name: kdcv1alpha1.ControlPlaneDeploymentName(c.Name)}},
		{"StatefulSet", w.Etcd, client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: kdcv1alpha1.EtcdStatefulSetName(c.DataStore())}},
	} {
		if err := e.Client.Get(ctx, o.key, o.obj); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, &Violation{Reason: kdcv1alpha1.ReasonObjectsMissing, Detail: fmt.Sprintf("%s %s does not exist", o.kind, o.key)}
			}
			return nil, fmt.Errorf("failed to get %s: %w", klog.KRef(o.key.Namespace, o.key.Name), err)
		}
	}
	return w, nil
}

// preparePrefix resolves what prefix mode needs: the tenant's etcd prefix (a PrefixUnknown
// Violation when it cannot be determined), DS-etcd's client URLs and the client certificate.
func (e *Engine) preparePrefix(ctx context.Context, c *kdcv1alpha1.KdcCluster, w *Workloads, p *Plan) error {
	var tcp *kamajiv1alpha1.TenantControlPlane
	if o := p.ControlPlaneOwner; o != nil {
		var err error
		if tcp, err = GetTenantControlPlane(ctx, e.Live, c.Namespace, o.Name); err != nil {
			return err
		}
	}
	prefix, err := EtcdPrefixOf(w.ControlPlane, tcp)
	if err != nil {
		return &Violation{Reason: kdcv1alpha1.ReasonPrefixUnknown, Field: RestoreFromField,
			Detail: fmt.Sprintf("the datastore is shared (%s) and the tenant's etcd key prefix is unknown: %v; a restore of the whole etcd would roll every other tenant back", p.ModeReason, err)}
	}
	p.EtcdPrefix = prefix
	p.EtcdEndpoints = EtcdEndpoints(w.Etcd)
	p.EtcdCerts, p.JobNamespace = TenantEtcdCerts(c, tcp)
	return nil
}

// WholeEtcdRestoreRunning reports whether the annotations show a running restore that replaces
// the whole etcd: any running restore whose recorded plan is not in prefix mode (one without a
// plan yet counts, to be safe).
func WholeEtcdRestoreRunning(annotations map[string]string) bool {
	if !kdcv1alpha1.RestoreRunning(annotations) {
		return false
	}
	r := &Restore{Record: annotations}
	p, err := r.recordedPlan()
	return err != nil || p.Mode != ModePrefix
}

// GetTenantControlPlane reads a TenantControlPlane through any reader, whatever its scheme knows.
func GetTenantControlPlane(ctx context.Context, r client.Reader, namespace, name string) (*kamajiv1alpha1.TenantControlPlane, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(TenantControlPlaneKind)
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u); err != nil {
		return nil, fmt.Errorf("failed to get TenantControlPlane %s/%s: %w", namespace, name, err)
	}
	tcp := &kamajiv1alpha1.TenantControlPlane{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, tcp); err != nil {
		return nil, fmt.Errorf("failed to read TenantControlPlane %s/%s: %w", namespace, name, err)
	}
	return tcp, nil
}

// memberCount is how many etcd members the restore writes.
func (p *Plan) memberCount() int { return max(1, len(p.Members)) }

// memberOf is member i's identity.
func (p *Plan) memberOf(i int) jobspec.Member {
	if len(p.Members) > i {
		return p.Members[i]
	}
	return p.Member
}

// PlanNote says, from a restore's annotations, which Jobs restore the data: each member's in a
// multi-member restore, the prefix Job in prefix mode; "" for one member.
func PlanNote(annotations map[string]string) string {
	p, err := (&Restore{Record: annotations}).recordedPlan()
	if err != nil {
		return ""
	}
	switch {
	case p.Mode == ModePrefix:
		return fmt.Sprintf("Restoring the keys under %s/ through the etcd API (prefix mode): etcd stays up for the other tenants", p.EtcdPrefix)
	case p.memberCount() > 1:
		var names []string
		for i, m := range p.Members {
			names = append(names, fmt.Sprintf("%s (Jobs *-etcd-restore-%d, *-etcd-swap-%d)", m.Name, i, i))
		}
		return fmt.Sprintf("Restoring %d members: %s; each staged, then swapped in at one revision", p.memberCount(), strings.Join(names, ", "))
	}
	return ""
}

// TenantEtcdCerts is the client certificate prefix-mode Jobs use and the namespace of its
// Secret: the tenant's own, limited to its prefix, where a Kamaji TCP reports one (etcd itself
// then refuses a write outside the prefix), else the datastore's DS-etcd-certs.
func TenantEtcdCerts(c *kdcv1alpha1.KdcCluster, tcp *kamajiv1alpha1.TenantControlPlane) (jobspec.EtcdCerts, string) {
	if tcp != nil && tcp.Status.Storage.Certificate.SecretName != "" {
		return jobspec.EtcdCerts{Secret: tcp.Status.Storage.Certificate.SecretName, Kamaji: true}, tcp.Namespace
	}
	return jobspec.EtcdCerts{Secret: kdcv1alpha1.EtcdCertsSecretName(c.DataStore())}, c.DataStoreNamespace()
}
