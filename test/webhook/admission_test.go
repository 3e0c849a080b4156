package webhook

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

const (
	validKey = "c1/c1-20260101T020000Z.db"
	otherKey = "c1/c1-20260102T020000Z.db"
	// stampedTime in a wanted annotation value means "an RFC 3339 time of the last minute".
	stampedTime = "<time>"
)

// running are the annotations of a restore in phase p that alice asked for.
func running(p kdcv1alpha1.RestorePhase) map[string]string {
	return map[string]string{
		kdcv1alpha1.AnnotationRestoreFrom:        validKey,
		kdcv1alpha1.AnnotationRestoreState:       string(p),
		kdcv1alpha1.AnnotationRestoreRequestedBy: "alice",
		kdcv1alpha1.AnnotationRestoreRequestedAt: "2026-01-01T03:00:00Z",
	}
}

func stampedBy(user, key string) map[string]string {
	return map[string]string{
		kdcv1alpha1.AnnotationRestoreFrom:        key,
		kdcv1alpha1.AnnotationRestoreState:       string(kdcv1alpha1.PhaseValidating),
		kdcv1alpha1.AnnotationRestoreRequestedBy: user,
		kdcv1alpha1.AnnotationRestoreRequestedAt: stampedTime,
	}
}

func plus(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// admissionCase is one request against cluster c1 in a fresh namespace.
type admissionCase struct {
	// replicas of datastore ds; 0: the datastore does not exist.
	replicas int32
	// initial annotations, written by the controller when creating c1.
	initial map[string]string
	// asController sends the patch as the controller instead of alice.
	asController bool
	// patch is the `kubectl annotate` merge patch.
	patch map[string]*string
	// reason of the rejection; "" means accepted.
	reason string
	// want are the stored annotations after an accepted request.
	want map[string]string
}

// matchAnnotations compares annotations, where stampedTime matches a recent RFC 3339 time.
func matchAnnotations(g Gomega, got, want map[string]string) {
	got = plus(got)
	for k, v := range want {
		if v != stampedTime {
			continue
		}
		at, err := time.Parse(time.RFC3339, got[k])
		g.Expect(err).NotTo(HaveOccurred(), "annotation %s", k)
		g.Expect(at).To(BeTemporally("~", time.Now(), time.Minute), "annotation %s", k)
		got[k] = stampedTime
	}
	if len(want) == 0 {
		g.Expect(got).To(BeEmpty())
		return
	}
	g.Expect(got).To(Equal(want))
}

// expectRejected checks err is the webhook's Invalid error with reason.
func expectRejected(err error, reason string) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred())
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid (422) error, got %v", err)
	Expect(err.Error()).To(ContainSubstring(reason + ": "))
}

var _ = Describe("KdcCluster restore requests", func() {
	DescribeTable("are admitted or rejected synchronously",
		func(tc admissionCase) {
			ns, err := env.NewNamespace(ctx, "adm")
			Expect(err).NotTo(HaveOccurred())
			if tc.replicas > 0 {
				Expect(env.Client.Create(ctx, newDataStore(ns, "ds", tc.replicas))).To(Succeed())
			}
			c := newCluster(ns, "c1", "ds")
			c.Annotations = tc.initial
			Expect(controller.Create(ctx, c)).To(Succeed())

			by := alice
			if tc.asController {
				by = controller
			}
			err = by.Patch(ctx, c, annotationsPatch(tc.patch))

			stored := &kdcv1alpha1.KdcCluster{}
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), stored)).To(Succeed())
			if tc.reason != "" {
				expectRejected(err, tc.reason)
				Expect(stored.Annotations).To(Equal(tc.initial), "a rejected request is never persisted")
				return
			}
			Expect(err).NotTo(HaveOccurred())
			matchAnnotations(Default, stored.Annotations, tc.want)
		},
		Entry("a valid key from an operator is accepted and stamped",
			admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(validKey)}, want: stampedBy("alice", validKey)}),
		Entry("a new request after a failed restore is accepted and restamped",
			admissionCase{replicas: 1, initial: plus(running(kdcv1alpha1.PhaseFailed), kdcv1alpha1.AnnotationRestoreRequestedBy, "bob"),
				patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(otherKey)}, want: stampedBy("alice", otherKey)}),
		Entry("other annotations are accepted while a restore runs",
			admissionCase{replicas: 1, initial: running(kdcv1alpha1.PhaseStoppingEtcd),
				patch: map[string]*string{"example.com/note": set("x")}, want: plus(running(kdcv1alpha1.PhaseStoppingEtcd), "example.com/note", "x")}),
		Entry("the controller advances the state",
			admissionCase{replicas: 1, initial: running(kdcv1alpha1.PhaseValidating), asController: true,
				patch: map[string]*string{kdcv1alpha1.AnnotationRestoreState: set(string(kdcv1alpha1.PhaseDrainingControlPlane)), kdcv1alpha1.AnnotationRestoreControlPlaneReplicas: set("2")},
				want:  plus(running(kdcv1alpha1.PhaseDrainingControlPlane), kdcv1alpha1.AnnotationRestoreControlPlaneReplicas, "2")}),
		Entry("the controller clears a finished restore",
			admissionCase{replicas: 1, initial: running(kdcv1alpha1.PhaseStartingControlPlane), asController: true,
				patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: nil, kdcv1alpha1.AnnotationRestoreState: nil,
					kdcv1alpha1.AnnotationRestoreRequestedBy: nil, kdcv1alpha1.AnnotationRestoreRequestedAt: nil}}),

		Entry("InvalidKey: path traversal", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("c1/../c1/c1-20260101T020000Z.db")}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("InvalidKey: absolute path", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("/" + validKey)}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("InvalidKey: other prefix", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("backups/" + validKey)}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("InvalidKey: other bucket", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("s3://other-bucket/" + validKey)}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("InvalidKey: empty", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("")}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("InvalidKey: whitespace only", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("  \t ")}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("InvalidKey: over-long", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(strings.Repeat("c1/", 200) + validKey)}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("InvalidKey: control character", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(validKey + "\a")}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("InvalidKey: wrong timestamp", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("c1/c1-20261301T020000Z.db")}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("InvalidKey: not a snapshot", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("c1/c1-20260101T020000Z.db.tmp")}, reason: kdcv1alpha1.ReasonInvalidKey}),
		Entry("ForeignKey: another cluster's snapshot", admissionCase{replicas: 1, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("c2/c2-20260101T020000Z.db")}, reason: kdcv1alpha1.ReasonForeignKey}),
		Entry("3 etcd replicas: admitted (the members are restored in place)", admissionCase{replicas: 3, patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(validKey)}, want: stampedBy("alice", validKey)}),
		Entry("DataStoreUnknown: no datastore", admissionCase{patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(validKey)}, reason: kdcv1alpha1.ReasonDataStoreUnknown}),
		Entry("RestoreInProgress: a second request", admissionCase{replicas: 1, initial: running(kdcv1alpha1.PhaseRestoringSnapshot),
			patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(otherKey)}, reason: kdcv1alpha1.ReasonRestoreInProgress}),
		Entry("RestoreInProgress: removing restore-from mid-restore", admissionCase{replicas: 1, initial: running(kdcv1alpha1.PhaseDrainingControlPlane),
			patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: nil}, reason: kdcv1alpha1.ReasonRestoreInProgress}),
		Entry("ProtectedAnnotation: an operator moves the state", admissionCase{replicas: 1, initial: running(kdcv1alpha1.PhaseRestoringSnapshot),
			patch: map[string]*string{kdcv1alpha1.AnnotationRestoreState: set(string(kdcv1alpha1.PhaseSucceeded))}, reason: kdcv1alpha1.ReasonProtectedAnnotation}),
		Entry("ProtectedAnnotation: an operator removes the state", admissionCase{replicas: 1, initial: running(kdcv1alpha1.PhaseRestoringSnapshot),
			patch: map[string]*string{kdcv1alpha1.AnnotationRestoreState: nil}, reason: kdcv1alpha1.ReasonProtectedAnnotation}),
		Entry("ProtectedAnnotation: an operator sets the state without a request", admissionCase{replicas: 1,
			patch: map[string]*string{kdcv1alpha1.AnnotationRestoreState: set(string(kdcv1alpha1.PhaseValidating))}, reason: kdcv1alpha1.ReasonProtectedAnnotation}),
		Entry("ProtectedAnnotation: an operator changes the requester", admissionCase{replicas: 1, initial: running(kdcv1alpha1.PhaseStartingEtcd),
			patch: map[string]*string{kdcv1alpha1.AnnotationRestoreRequestedBy: set("mallory")}, reason: kdcv1alpha1.ReasonProtectedAnnotation}),
		Entry("ProtectedAnnotation: an operator adds other bookkeeping with a request", admissionCase{replicas: 1,
			patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(validKey), kdcv1alpha1.AnnotationRestoreSwapped: set("true")}, reason: kdcv1alpha1.ReasonProtectedAnnotation}),
		Entry("InvalidKey: even the controller cannot set a bad key", admissionCase{replicas: 1, asController: true,
			patch: map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set("../etc/passwd")}, reason: kdcv1alpha1.ReasonInvalidKey}),
	)

	It("stamps a restore request made when the cluster is created", func() {
		ns, err := env.NewNamespace(ctx, "create")
		Expect(err).NotTo(HaveOccurred())
		Expect(env.Client.Create(ctx, newDataStore(ns, "ds", 1))).To(Succeed())
		c := newCluster(ns, "c1", "ds")
		c.Annotations = map[string]string{kdcv1alpha1.AnnotationRestoreFrom: validKey}
		Expect(alice.Create(ctx, c)).To(Succeed())
		matchAnnotations(Default, c.Annotations, stampedBy("alice", validKey))

		By("leaving a later write that keeps restore-from alone unstamped and unchanged")
		Expect(controller.Patch(ctx, c, annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestoreState: nil}))).To(Succeed())
		Expect(alice.Patch(ctx, c, annotationsPatch(map[string]*string{"example.com/note": set("x")}))).To(Succeed())
		Expect(c.Annotations).NotTo(HaveKey(kdcv1alpha1.AnnotationRestoreState))
	})

	It("rejects deleting a cluster while its restore runs", func() {
		ns, err := env.NewNamespace(ctx, "del")
		Expect(err).NotTo(HaveOccurred())
		Expect(env.Client.Create(ctx, newDataStore(ns, "ds", 1))).To(Succeed())
		c := newCluster(ns, "c1", "ds")
		Expect(env.Client.Create(ctx, c)).To(Succeed())
		Expect(alice.Patch(ctx, c, annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(validKey)}))).To(Succeed())

		err = alice.Delete(ctx, c)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
		Expect(err.Error()).To(ContainSubstring(kdcv1alpha1.ReasonRestoreInProgress + ": the cluster cannot be deleted"))
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), c)).To(Succeed())

		By("deleting it once the controller ended the restore")
		Expect(controller.Patch(ctx, c, annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestoreState: set(string(kdcv1alpha1.PhaseSucceeded))}))).To(Succeed())
		Expect(alice.Delete(ctx, c)).To(Succeed())
	})

	It("rejects changing the datastore's replicas while a restore of a cluster using it runs", func() {
		ns, err := env.NewNamespace(ctx, "ds")
		Expect(err).NotTo(HaveOccurred())
		ds := newDataStore(ns, "ds", 1)
		Expect(env.Client.Create(ctx, ds)).To(Succeed())
		c := newCluster(ns, "c1", "ds")
		Expect(env.Client.Create(ctx, c)).To(Succeed())
		replicasPatch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"etcd":{"replicas":3}}}`))

		By("accepting a change while no restore runs")
		Expect(alice.Patch(ctx, ds.DeepCopy(), replicasPatch, client.DryRunAll)).To(Succeed())

		Expect(alice.Patch(ctx, c, annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(validKey)}))).To(Succeed())
		By("rejecting it once the webhook's cache has seen the restore")
		Eventually(func(g Gomega) {
			err := alice.Patch(ctx, ds.DeepCopy(), replicasPatch, client.DryRunAll)
			g.Expect(err).To(MatchError(ContainSubstring(kdcv1alpha1.ReasonRestoreInProgress + ": cannot change etcd replicas from 1 to 3 while a restore of " + ns + "/c1 runs")))
		}).Should(Succeed())
		expectRejected(alice.Patch(ctx, ds.DeepCopy(), replicasPatch), kdcv1alpha1.ReasonRestoreInProgress)
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(ds), ds)).To(Succeed())
		Expect(ds.Spec.Etcd.Replicas).To(BeEquivalentTo(1))

		By("accepting a version change meanwhile")
		Expect(alice.Patch(ctx, ds.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"etcd":{"version":"v3.5.21"}}}`)))).To(Succeed())
	})
})

var _ = Describe("KdcCluster spec.backup", func() {
	DescribeTable("is checked where the CRD schema cannot",
		func(backup kdcv1alpha1.BackupSpec, wantField string) {
			ns, err := env.NewNamespace(ctx, "spec")
			Expect(err).NotTo(HaveOccurred())
			c := newCluster(ns, "c1", "ds")
			c.Spec.Backup = backup
			err = alice.Create(ctx, c)
			if wantField == "" {
				Expect(err).NotTo(HaveOccurred())
				return
			}
			expectRejected(err, kdcv1alpha1.ReasonInvalidBackupSpec)
			Expect(err.Error()).To(ContainSubstring(wantField + ": Invalid value"))
		},
		Entry("valid schedule, endpoint and destination", kdcv1alpha1.BackupSpec{Schedule: "30 1 * * MON-FRI", S3Endpoint: "https://s3.example.com", DestinationPath: "s3://team-backups/etcd"}, ""),
		Entry("schedule with 6 fields", kdcv1alpha1.BackupSpec{Schedule: "0 0 2 * * *"}, "spec.backup.schedule"),
		Entry("schedule out of range", kdcv1alpha1.BackupSpec{Schedule: "0 25 * * *"}, "spec.backup.schedule"),
		Entry("schedule with a time zone", kdcv1alpha1.BackupSpec{Schedule: "TZ=Europe/Berlin 0 2 * * *"}, "spec.backup.schedule"),
		Entry("endpoint that is not http(s)", kdcv1alpha1.BackupSpec{S3Endpoint: "s3.example.com:9000"}, "spec.backup.s3Endpoint"),
		Entry("endpoint with credentials", kdcv1alpha1.BackupSpec{S3Endpoint: "https://AKIA:secret@s3.example.com"}, "spec.backup.s3Endpoint"),
		Entry("destination with traversal", kdcv1alpha1.BackupSpec{DestinationPath: "s3://team-backups/a/../b"}, "spec.backup.destinationPath"),
		Entry("destination with an IP bucket", kdcv1alpha1.BackupSpec{DestinationPath: "s3://10.0.0.1/etcd"}, "spec.backup.destinationPath"),
	)
})

var _ = Describe("Attaching a KdcCluster to a datastore", func() {
	It("is refused while a whole-etcd restore of that datastore runs, and allowed beside a prefix restore", func() {
		ns, err := env.NewNamespace(ctx, "attach")
		Expect(err).NotTo(HaveOccurred())
		Expect(env.Client.Create(ctx, newDataStore(ns, "ds", 1))).To(Succeed())
		c1 := newCluster(ns, "c1", "ds")
		c1.Annotations = running(kdcv1alpha1.PhaseRestoringSnapshot)
		Expect(controller.Create(ctx, c1)).To(Succeed())

		By("a second cluster on the datastore under a whole-etcd restore")
		Eventually(func(g Gomega) {
			err := alice.Create(ctx, newCluster(ns, "c2", "ds"))
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid (422) error, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring("spec.dataStore: Forbidden: " + kdcv1alpha1.ReasonDataStoreInUse + ": KdcCluster " + ns + "/c1 restores the whole etcd"))
		}).Should(Succeed())

		By("the same while the restore runs in prefix mode")
		Expect(controller.Patch(ctx, c1, annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestorePlan: set(`{"mode":"prefix"}`)}))).To(Succeed())
		Eventually(func() error { return alice.Create(ctx, newCluster(ns, "c2", "ds")) }).Should(Succeed())
	})
})
