package webhook

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

const controllerUser = "system:serviceaccount:kdc:manager"

var testNow = time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)

// fakeDataStores returns its datastores and their users by key, or err.
type fakeDataStores struct {
	stores map[types.NamespacedName]*kdcv1alpha1.KdcClusterDatastore
	users  map[types.NamespacedName][]kdcv1alpha1.KdcCluster
	err    error
	// prefixErr is why the tenant's etcd prefix cannot be determined.
	prefixErr error
}

func (f fakeDataStores) GetDataStore(_ context.Context, key types.NamespacedName) (*kdcv1alpha1.KdcClusterDatastore, error) {
	return f.stores[key], f.err
}

func (f fakeDataStores) DataStoreUsers(_ context.Context, key types.NamespacedName) ([]kdcv1alpha1.KdcCluster, error) {
	return f.users[key], f.err
}

func (f fakeDataStores) EtcdPrefix(context.Context, *kdcv1alpha1.KdcCluster) (string, error) {
	if f.prefixErr != nil {
		return "", f.prefixErr
	}
	return "/registry", nil
}

// clusterBuilder builds KdcCluster fixtures.
type clusterBuilder struct{ c kdcv1alpha1.KdcCluster }

func cluster() *clusterBuilder {
	return &clusterBuilder{c: kdcv1alpha1.KdcCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c1"},
		Spec:       kdcv1alpha1.KdcClusterSpec{DataStore: kdcv1alpha1.DataStoreRef{Name: "ds"}},
	}}
}

func (b *clusterBuilder) annotations(m map[string]string) *clusterBuilder {
	b.c.Annotations = m
	return b
}

func (b *clusterBuilder) dataStore(name string) *clusterBuilder {
	b.c.Spec.DataStore.Name = name
	return b
}

func (b *clusterBuilder) schedule(s string) *clusterBuilder {
	b.c.Spec.Backup.Schedule = s
	return b
}

func (b *clusterBuilder) obj() *kdcv1alpha1.KdcCluster { return b.c.DeepCopy() }

// named renames the cluster of b.
func named(b *clusterBuilder, name string) *clusterBuilder {
	b.c.Name = name
	return b
}

func requestContext(op admissionv1.Operation, user string, oldObj runtime.Object) context.Context {
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: op,
		UserInfo:  authenticationv1.UserInfo{Username: user},
	}}
	if oldObj != nil {
		req.OldObject = runtime.RawExtension{Object: oldObj}
		raw, err := jsonOf(oldObj)
		if err != nil {
			panic(err)
		}
		req.OldObject.Raw = raw
	}
	return admission.NewContextWithRequest(context.Background(), req)
}

// causesOfError returns the causes of an Invalid or Forbidden API error.
func causesOfError(err error) []cause {
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		return []cause{{Reason: "unexpected: " + err.Error()}}
	}
	var out []cause
	for _, c := range status.Status().Details.Causes {
		e := &field.Error{Detail: c.Message}
		// The cause message is "<Type>: <detail>"; the detail starts with the reason.
		_, e.Detail, _ = cutType(c.Message)
		out = append(out, cause{Type: field.ErrorType(c.Type), Field: c.Field, Reason: ReasonOf(e)})
	}
	return out
}

func TestKdcClusterValidator(t *testing.T) {
	key := "c1/c1-20260101T020000Z.db"
	request := map[string]string{kdcv1alpha1.AnnotationRestoreFrom: key}
	stamped := with(with(with(request,
		kdcv1alpha1.AnnotationRestoreState, "Validating"),
		kdcv1alpha1.AnnotationRestoreRequestedBy, "alice"),
		kdcv1alpha1.AnnotationRestoreRequestedAt, "2026-01-01T03:00:00Z")
	stores := fakeDataStores{stores: map[types.NamespacedName]*kdcv1alpha1.KdcClusterDatastore{
		{Namespace: "ns", Name: "ds"}:  dataStore(1),
		{Namespace: "ns", Name: "ds4"}: dataStore(4),
	}}
	from := func(ft field.ErrorType, reason string) cause { return cause{ft, fromField, reason} }
	protected := func(key string) cause {
		return cause{field.ErrorTypeForbidden, AnnotationsPath.Key(key).String(), kdcv1alpha1.ReasonProtectedAnnotation}
	}
	tests := []struct {
		name     string
		user     string
		old, new *kdcv1alpha1.KdcCluster
		stores   DataStoreGetter
		want     []cause
		wantErr  bool
	}{
		{name: "create plain", new: cluster().obj()},
		{name: "create with bad schedule", new: cluster().schedule("61 * * * *").obj(), want: []cause{
			{field.ErrorTypeInvalid, "spec.backup.schedule", kdcv1alpha1.ReasonInvalidBackupSpec}}},
		{name: "update keeps a stored bad schedule", old: cluster().schedule("@daily").obj(), new: cluster().schedule("@daily").annotations(map[string]string{"x": "y"}).obj()},
		{name: "create with a restore request", new: cluster().annotations(stamped).obj()},
		{name: "accepted request", old: cluster().obj(), new: cluster().annotations(stamped).obj()},
		{name: "accepted request without stamps", old: cluster().obj(), new: cluster().annotations(request).obj()},
		{name: "invalid key", old: cluster().obj(), new: cluster().annotations(with(stamped, kdcv1alpha1.AnnotationRestoreFrom, "../x")).obj(), want: []cause{
			from(field.ErrorTypeInvalid, kdcv1alpha1.ReasonInvalidKey)}},
		{name: "foreign key", old: cluster().obj(), new: cluster().annotations(with(stamped, kdcv1alpha1.AnnotationRestoreFrom, "c2/c2-20260101T020000Z.db")).obj(), want: []cause{
			from(field.ErrorTypeInvalid, kdcv1alpha1.ReasonForeignKey)}},
		{name: "multi replica", old: cluster().dataStore("ds4").obj(), new: cluster().dataStore("ds4").annotations(stamped).obj(), want: []cause{
			from(field.ErrorTypeForbidden, kdcv1alpha1.ReasonMultiReplicaUnsupported)}},
		{name: "unknown datastore", old: cluster().dataStore("gone").obj(), new: cluster().dataStore("gone").annotations(stamped).obj(), want: []cause{
			from(field.ErrorTypeForbidden, kdcv1alpha1.ReasonDataStoreUnknown)}},
		{name: "no datastore", old: cluster().dataStore("").obj(), new: cluster().dataStore("").annotations(stamped).obj(), want: []cause{
			from(field.ErrorTypeForbidden, kdcv1alpha1.ReasonDataStoreUnknown)}},
		{name: "key and datastore both bad", old: cluster().dataStore("ds4").obj(), new: cluster().dataStore("ds4").annotations(request).annotations(with(request, kdcv1alpha1.AnnotationRestoreFrom, "/x")).obj(), want: []cause{
			from(field.ErrorTypeInvalid, kdcv1alpha1.ReasonInvalidKey), from(field.ErrorTypeForbidden, kdcv1alpha1.ReasonMultiReplicaUnsupported)}},
		{name: "concurrent request", old: cluster().annotations(restoring(kdcv1alpha1.PhaseValidating)).obj(),
			new: cluster().annotations(with(restoring(kdcv1alpha1.PhaseValidating), kdcv1alpha1.AnnotationRestoreFrom, "c1/c1-20260102T020000Z.db")).obj(), want: []cause{
				from(field.ErrorTypeForbidden, kdcv1alpha1.ReasonRestoreInProgress)}},
		{name: "remove restore-from mid-restore", old: cluster().annotations(restoring(kdcv1alpha1.PhaseStoppingEtcd)).obj(),
			new: cluster().annotations(without(restoring(kdcv1alpha1.PhaseStoppingEtcd), kdcv1alpha1.AnnotationRestoreFrom)).obj(), want: []cause{
				from(field.ErrorTypeForbidden, kdcv1alpha1.ReasonRestoreInProgress)}},
		{name: "user advances the state", old: cluster().annotations(restoring(kdcv1alpha1.PhaseStoppingEtcd)).obj(),
			new: cluster().annotations(with(restoring(kdcv1alpha1.PhaseStoppingEtcd), kdcv1alpha1.AnnotationRestoreState, "Succeeded")).obj(), want: []cause{
				protected(kdcv1alpha1.AnnotationRestoreState)}},
		{name: "user sets the state alone", old: cluster().obj(), new: cluster().annotations(map[string]string{kdcv1alpha1.AnnotationRestoreState: "Validating"}).obj(), want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreState)}},
		{name: "forged requester", old: cluster().obj(), new: cluster().annotations(with(stamped, kdcv1alpha1.AnnotationRestoreRequestedBy, "bob")).obj(), want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreRequestedBy)}},
		{name: "controller advances the state", user: controllerUser, old: cluster().annotations(restoring(kdcv1alpha1.PhaseStoppingEtcd)).obj(),
			new: cluster().annotations(with(restoring(kdcv1alpha1.PhaseStoppingEtcd), kdcv1alpha1.AnnotationRestoreState, "RestoringSnapshot")).obj()},
		{name: "controller clears everything", user: controllerUser, old: cluster().annotations(restoring(kdcv1alpha1.PhaseStartingControlPlane)).obj(), new: cluster().obj()},
		{name: "controller cannot set an invalid key", user: controllerUser, old: cluster().obj(), new: cluster().annotations(map[string]string{kdcv1alpha1.AnnotationRestoreFrom: "../x"}).obj(), want: []cause{
			from(field.ErrorTypeInvalid, kdcv1alpha1.ReasonInvalidKey)}},
		{name: "datastore lookup fails", old: cluster().obj(), new: cluster().annotations(stamped).obj(), stores: fakeDataStores{err: errors.New("boom")}, wantErr: true},
		{name: "shared datastore of 4 members: admitted in prefix mode", old: cluster().dataStore("ds4").obj(), new: cluster().dataStore("ds4").annotations(stamped).obj(),
			stores: fakeDataStores{stores: stores.stores, users: map[types.NamespacedName][]kdcv1alpha1.KdcCluster{
				{Namespace: "ns", Name: "ds4"}: {*cluster().dataStore("ds4").obj(), *named(cluster().dataStore("ds4"), "c2").obj()}}}},
		{name: "shared datastore, prefix unknown", old: cluster().dataStore("ds4").obj(), new: cluster().dataStore("ds4").annotations(stamped).obj(),
			stores: fakeDataStores{stores: stores.stores, prefixErr: errors.New("TenantControlPlane ns/c1-cp reports no status.storage.setup.schema yet"), users: map[types.NamespacedName][]kdcv1alpha1.KdcCluster{
				{Namespace: "ns", Name: "ds4"}: {*cluster().dataStore("ds4").obj(), *named(cluster().dataStore("ds4"), "c2").obj()}}},
			want: []cause{from(field.ErrorTypeForbidden, kdcv1alpha1.ReasonPrefixUnknown)}},
		{name: "attach while a whole-etcd restore of the datastore runs", new: named(cluster(), "c2").obj(),
			stores: fakeDataStores{stores: stores.stores, users: map[types.NamespacedName][]kdcv1alpha1.KdcCluster{
				{Namespace: "ns", Name: "ds"}: {*cluster().annotations(restoring(kdcv1alpha1.PhaseRestoringSnapshot)).obj()}}},
			want: []cause{{field.ErrorTypeForbidden, "spec.dataStore", kdcv1alpha1.ReasonDataStoreInUse}}},
		{name: "attach while a prefix restore of a co-tenant runs", new: named(cluster(), "c2").obj(),
			stores: fakeDataStores{stores: stores.stores, users: map[types.NamespacedName][]kdcv1alpha1.KdcCluster{
				{Namespace: "ns", Name: "ds"}: {*cluster().annotations(with(restoring(kdcv1alpha1.PhaseRestoringSnapshot), kdcv1alpha1.AnnotationRestorePlan, `{"mode":"prefix"}`)).obj()}}}},
		{name: "an update that keeps the datastore is not an attach", old: named(cluster(), "c2").obj(), new: named(cluster(), "c2").annotations(map[string]string{"x": "y"}).obj(),
			stores: fakeDataStores{stores: stores.stores, users: map[types.NamespacedName][]kdcv1alpha1.KdcCluster{
				{Namespace: "ns", Name: "ds"}: {*cluster().annotations(restoring(kdcv1alpha1.PhaseRestoringSnapshot)).obj()}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.user == "" {
				tt.user = "alice"
			}
			if tt.stores == nil {
				tt.stores = stores
			}
			v := &KdcClusterValidator{DataStores: tt.stores, ControllerUsername: controllerUser, Now: func() time.Time { return testNow }}
			var err error
			if tt.old == nil {
				_, err = v.ValidateCreate(requestContext(admissionv1.Create, tt.user, nil), tt.new)
			} else {
				_, err = v.ValidateUpdate(requestContext(admissionv1.Update, tt.user, tt.old), tt.old, tt.new)
			}
			if tt.wantErr {
				if !apierrors.IsInternalError(err) {
					t.Fatalf("validate() = %v, want an internal error", err)
				}
				return
			}
			if err != nil && !apierrors.IsInvalid(err) {
				t.Fatalf("validate() = %v, want an Invalid error", err)
			}
			if diff := cmp.Diff(tt.want, causesOfError(err)); diff != "" {
				t.Errorf("validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKdcClusterValidatorDelete(t *testing.T) {
	tests := []struct {
		name, user string
		c          *kdcv1alpha1.KdcCluster
		want       []cause
	}{
		{name: "no restore", user: "alice", c: cluster().obj()},
		{name: "finished restore", user: "alice", c: cluster().annotations(restoring(kdcv1alpha1.PhaseFailed)).obj()},
		{name: "running restore", user: "alice", c: cluster().annotations(restoring(kdcv1alpha1.PhaseRestoringSnapshot)).obj(), want: []cause{
			{field.ErrorTypeForbidden, AnnotationsPath.Key(kdcv1alpha1.AnnotationRestoreState).String(), kdcv1alpha1.ReasonRestoreInProgress}}},
		{name: "controller", user: controllerUser, c: cluster().annotations(restoring(kdcv1alpha1.PhaseRestoringSnapshot)).obj()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &KdcClusterValidator{ControllerUsername: controllerUser, Now: func() time.Time { return testNow }}
			_, err := v.ValidateDelete(requestContext(admissionv1.Delete, tt.user, tt.c), tt.c)
			if err != nil && !apierrors.IsForbidden(err) {
				t.Fatalf("ValidateDelete() = %v, want Forbidden", err)
			}
			var got []cause
			if err != nil {
				// Forbidden carries the aggregate message, not causes.
				got = []cause{{field.ErrorTypeForbidden, AnnotationsPath.Key(kdcv1alpha1.AnnotationRestoreState).String(), reasonInMessage(err.Error())}}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ValidateDelete() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKdcClusterDefaulter(t *testing.T) {
	key := "c1/c1-20260101T020000Z.db"
	request := map[string]string{kdcv1alpha1.AnnotationRestoreFrom: key, "example.com/other": "kept"}
	stamped := with(with(with(request,
		kdcv1alpha1.AnnotationRestoreState, "Validating"),
		kdcv1alpha1.AnnotationRestoreRequestedBy, "alice"),
		kdcv1alpha1.AnnotationRestoreRequestedAt, "2026-01-01T03:00:00Z")
	running := restoring(kdcv1alpha1.PhaseStoppingEtcd)
	tests := []struct {
		name     string
		op       admissionv1.Operation
		user     string
		old, new map[string]string
		want     map[string]string
	}{
		{name: "no annotations", op: admissionv1.Update, old: nil, new: nil, want: nil},
		{name: "create with request", op: admissionv1.Create, new: request, want: stamped},
		{name: "new request", op: admissionv1.Update, new: request, want: stamped},
		{name: "changed request after a failure", op: admissionv1.Update, old: restoring(kdcv1alpha1.PhaseFailed),
			new: with(restoring(kdcv1alpha1.PhaseFailed), kdcv1alpha1.AnnotationRestoreFrom, "c1/c1-20260102T020000Z.db"),
			want: with(with(with(restoring(kdcv1alpha1.PhaseFailed), kdcv1alpha1.AnnotationRestoreFrom, "c1/c1-20260102T020000Z.db"),
				kdcv1alpha1.AnnotationRestoreState, "Validating"), kdcv1alpha1.AnnotationRestoreRequestedAt, "2026-01-01T03:00:00Z")},
		{name: "unchanged request", op: admissionv1.Update, old: request, new: request, want: request},
		{name: "already stamped (idempotent)", op: admissionv1.Update, new: stamped, want: stamped},
		{name: "forged stamps are replaced", op: admissionv1.Update, new: with(with(request, kdcv1alpha1.AnnotationRestoreRequestedBy, "bob"), kdcv1alpha1.AnnotationRestoreState, "Succeeded"), want: stamped},
		{name: "running restore is not restamped", op: admissionv1.Update, old: running, new: with(running, kdcv1alpha1.AnnotationRestoreFrom, "c1/c1-20260102T020000Z.db"),
			want: with(running, kdcv1alpha1.AnnotationRestoreFrom, "c1/c1-20260102T020000Z.db")},
		{name: "controller is not stamped", op: admissionv1.Update, user: controllerUser, new: request, want: request},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.user == "" {
				tt.user = "alice"
			}
			d := &KdcClusterDefaulter{ControllerUsername: controllerUser, Now: func() time.Time { return testNow }}
			var oldObj runtime.Object
			if tt.op == admissionv1.Update {
				oldObj = cluster().annotations(tt.old).obj()
			}
			ctx := requestContext(tt.op, tt.user, oldObj)
			c := cluster().annotations(with(tt.new, "x", "y")).obj()
			delete(c.Annotations, "x")
			if len(tt.new) == 0 {
				c.Annotations = nil
			}
			if err := d.Default(ctx, c); err != nil {
				t.Fatalf("Default() failed: %v", err)
			}
			if diff := cmp.Diff(tt.want, c.Annotations); diff != "" {
				t.Errorf("Default() annotations mismatch (-want +got):\n%s", diff)
			}
			// Idempotent, even a minute later.
			d.Now = func() time.Time { return testNow.Add(time.Minute) }
			again := c.DeepCopy()
			if err := d.Default(ctx, again); err != nil {
				t.Fatalf("second Default() failed: %v", err)
			}
			if diff := cmp.Diff(c.Annotations, again.Annotations); diff != "" {
				t.Errorf("Default() is not idempotent (-first +second):\n%s", diff)
			}
		})
	}
}

func TestDataStoreValidator(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := kdcv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c1 := cluster().annotations(restoring(kdcv1alpha1.PhaseRestoringSnapshot)).obj()
	other := cluster().dataStore("other").annotations(restoring(kdcv1alpha1.PhaseRestoringSnapshot)).obj()
	other.Name = "c2"
	idle := cluster().obj()
	idle.Name = "c3"
	replicas := []cause{{field.ErrorTypeForbidden, "spec.etcd.replicas", kdcv1alpha1.ReasonRestoreInProgress}}
	tests := []struct {
		name     string
		clusters []client.Object
		user     string
		old, new int32
		listErr  error
		want     []cause
	}{
		{name: "no restore", clusters: []client.Object{idle, other}, old: 1, new: 3},
		{name: "restore running", clusters: []client.Object{c1, idle}, old: 1, new: 3, want: replicas},
		{name: "unchanged replicas", clusters: []client.Object{c1}, old: 1, new: 1},
		{name: "controller", user: controllerUser, clusters: []client.Object{c1}, old: 1, new: 3},
		{name: "list fails", old: 1, new: 3, listErr: errors.New("boom"), want: []cause{{Reason: "internal"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.user == "" {
				tt.user = "alice"
			}
			cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tt.clusters...).
				WithIndex(&kdcv1alpha1.KdcCluster{}, RestoringDataStoreIndex, RestoringDataStoreIndexFunc).
				WithInterceptorFuncs(interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
					if tt.listErr != nil {
						return tt.listErr
					}
					return c.List(ctx, list, opts...)
				}}).Build()
			v := &DataStoreValidator{Clusters: cl, ControllerUsername: controllerUser}
			oldDS, ds := dataStore(tt.old), dataStore(tt.new)
			_, err := v.ValidateUpdate(requestContext(admissionv1.Update, tt.user, oldDS), oldDS, ds)
			got := causesOfError(err)
			if apierrors.IsInternalError(err) {
				got = []cause{{Reason: "internal"}}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ValidateUpdate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
