package certmanager_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	cmapiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/go-logr/logr"
	"github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kube-dc.com/etcd-backup/test/certmanager"
	"kube-dc.com/etcd-backup/test/framework"
)

const (
	timeout = 60 * time.Second
	poll    = 100 * time.Millisecond
)

// TestCertManager runs the chain the product's install uses through cert-manager's real
// controllers and CA injector: self-signed Issuer -> CA Certificate -> CA Issuer -> serving
// Certificate -> Secret -> caBundle of webhook configurations and a CRD's conversion webhook.
func TestCertManager(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	paths, err := certmanager.CRDPaths()
	if err != nil {
		t.Fatal(err)
	}
	env, err := framework.Start(framework.Options{ExtraCRDPaths: paths})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	}()
	// Installing again is a no-op: the demo and the dry-run test may call it on any cluster.
	if err := certmanager.InstallCRDs(ctx, env.Config); err != nil {
		t.Fatal(err)
	}

	stop, err := certmanager.Start(ctx, env.Config, certmanager.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()

	c := newClient(t, env)
	ns, err := env.NewNamespace(ctx, "cm")
	if err != nil {
		t.Fatal(err)
	}
	svc := "kdc-etcd-backup-webhook-service"
	dnsNames := []string{svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}
	injectFrom := ns + "/serving-cert"
	for _, o := range []client.Object{
		&cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "selfsigned"},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
		},
		certificate(ns, "ca", "selfsigned", func(s *cmapi.CertificateSpec) {
			s.IsCA, s.CommonName = true, "kdc-etcd-backup-ca"
		}),
		&cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca-issuer"},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "ca"}}},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 443}}},
		},
		certificate(ns, "serving-cert", "ca-issuer", func(s *cmapi.CertificateSpec) {
			s.DNSNames = dnsNames
			s.PrivateKey.RotationPolicy = cmapi.RotationPolicyAlways
		}),
		validatingWebhook(ns, svc, injectFrom),
		mutatingWebhook(ns, svc, injectFrom),
		conversionCRD(ns, svc, injectFrom),
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("failed to create %T %s: %v", o, o.GetName(), err)
		}
	}
	defer dumpOnFailure(t, c, ns)

	var servingPEM []byte
	t.Run("IssuesChain", func(t *testing.T) {
		g := gomega.NewWithT(t)
		waitReady(ctx, g, c, ns, "ca")
		waitReady(ctx, g, c, ns, "serving-cert")
		caSecret := secret(ctx, g, c, ns, "ca")
		serving := secret(ctx, g, c, ns, "serving-cert")
		for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, cmmeta.TLSCAKey} {
			g.Expect(serving.Data).To(gomega.HaveKeyWithValue(k, gomega.Not(gomega.BeEmpty())), "key %s", k)
		}
		g.Expect(serving.Data[cmmeta.TLSCAKey]).To(gomega.Equal(caSecret.Data[corev1.TLSCertKey]), "ca.crt is the CA certificate")
		ca := parseCert(g, caSecret.Data[corev1.TLSCertKey])
		g.Expect(ca.IsCA).To(gomega.BeTrue())
		verifyServing(g, serving, dnsNames)
		servingPEM = serving.Data[corev1.TLSCertKey]
	})

	t.Run("InjectsCABundle", func(t *testing.T) {
		g := gomega.NewWithT(t)
		ca := secret(ctx, g, c, ns, "ca").Data[corev1.TLSCertKey]
		g.Eventually(func(g gomega.Gomega) {
			var v admissionv1.ValidatingWebhookConfiguration
			g.Expect(c.Get(ctx, types.NamespacedName{Name: "kdc-test-" + ns}, &v)).To(gomega.Succeed())
			g.Expect(v.Webhooks[0].ClientConfig.CABundle).To(gomega.Equal(ca))
			var m admissionv1.MutatingWebhookConfiguration
			g.Expect(c.Get(ctx, types.NamespacedName{Name: "kdc-test-" + ns}, &m)).To(gomega.Succeed())
			g.Expect(m.Webhooks[0].ClientConfig.CABundle).To(gomega.Equal(ca))
			var crd apiextensionsv1.CustomResourceDefinition
			g.Expect(c.Get(ctx, types.NamespacedName{Name: crdName(ns)}, &crd)).To(gomega.Succeed())
			g.Expect(crd.Spec.Conversion.Webhook.ClientConfig.CABundle).To(gomega.Equal(ca))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(poll).Should(gomega.Succeed())
	})

	// cmctl renew's mechanism: set the Issuing condition; the Certificate gets a new revision.
	t.Run("RenewsOnDemand", func(t *testing.T) {
		g := gomega.NewWithT(t)
		revision := renew(ctx, g, c, ns, "serving-cert")
		g.Eventually(func(g gomega.Gomega) {
			crt := getCert(ctx, g, c, ns, "serving-cert")
			g.Expect(crt.Status.Revision).To(gomega.HaveValue(gomega.BeNumerically(">", revision)))
			g.Expect(cmapiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue})).To(gomega.BeTrue())
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(poll).Should(gomega.Succeed())
		serving := secret(ctx, g, c, ns, "serving-cert")
		g.Expect(serving.Data[corev1.TLSCertKey]).NotTo(gomega.Equal(servingPEM), "a renewed certificate")
		verifyServing(g, serving, dnsNames)
		servingPEM = serving.Data[corev1.TLSCertKey]
	})

	t.Run("ReissuesDeletedSecret", func(t *testing.T) {
		g := gomega.NewWithT(t)
		old := secret(ctx, g, c, ns, "serving-cert")
		g.Expect(c.Delete(ctx, old)).To(gomega.Succeed())
		g.Eventually(func(g gomega.Gomega) {
			var s corev1.Secret
			g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "serving-cert"}, &s)).To(gomega.Succeed())
			g.Expect(s.UID).NotTo(gomega.Equal(old.UID))
			g.Expect(s.Data).To(gomega.HaveKey(corev1.TLSCertKey))
			g.Expect(s.Data[corev1.TLSCertKey]).NotTo(gomega.Equal(servingPEM))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(poll).Should(gomega.Succeed())
		waitReady(ctx, g, c, ns, "serving-cert")
		verifyServing(g, secret(ctx, g, c, ns, "serving-cert"), dnsNames)
	})

	t.Run("SelfSignedClusterIssuer", func(t *testing.T) {
		g := gomega.NewWithT(t)
		ci := &cmapi.ClusterIssuer{
			ObjectMeta: metav1.ObjectMeta{Name: "selfsigned-" + ns},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
		}
		g.Expect(c.Create(ctx, ci)).To(gomega.Succeed())
		crt := certificate(ns, "from-cluster-issuer", ci.Name, func(s *cmapi.CertificateSpec) {
			s.IsCA, s.CommonName = true, "cluster-ca"
			s.IssuerRef.Kind = cmapi.ClusterIssuerKind
		})
		g.Expect(c.Create(ctx, crt)).To(gomega.Succeed())
		waitReady(ctx, g, c, ns, crt.Name)
		g.Expect(parseCert(g, secret(ctx, g, c, ns, crt.Name).Data[corev1.TLSCertKey]).Subject.CommonName).To(gomega.Equal("cluster-ca"))
	})
}

// TestStartNeedsCRDs: without cert-manager's CRDs Start fails at once with a hint instead of
// waiting forever for its informers; InstallCRDs on a fresh cluster fixes that.
func TestStartNeedsCRDs(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	ctx := context.Background()
	env, err := framework.Start(framework.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	}()
	if stop, err := certmanager.Start(ctx, env.Config, certmanager.Options{}); err == nil {
		_ = stop()
		t.Fatal("Start succeeded without cert-manager's CRDs")
	} else if !strings.Contains(err.Error(), "InstallCRDs") {
		t.Errorf("error without a hint: %v", err)
	}
	if err := certmanager.InstallCRDs(ctx, env.Config); err != nil {
		t.Fatal(err)
	}
	stop, err := certmanager.Start(ctx, env.Config, certmanager.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
}

func newClient(t *testing.T, env *framework.Env) client.Client {
	s := framework.NewScheme()
	utilruntime.Must(cmapi.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	c, err := client.New(env.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dc.ServerResourcesForGroupVersion(cmapi.SchemeGroupVersion.String()); err != nil {
		t.Fatalf("cert-manager API not served: %v", err)
	}
	return c
}

// certificate is a Certificate whose Secret has the Certificate's name, with an ECDSA key as
// in the product's manifests.
func certificate(ns, name, issuer string, mutate func(*cmapi.CertificateSpec)) *cmapi.Certificate {
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: cmapi.CertificateSpec{
			SecretName: name,
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Name: issuer, Kind: cmapi.IssuerKind},
		},
	}
	mutate(&crt.Spec)
	return crt
}

func webhookClientConfig(ns, svc string) admissionv1.WebhookClientConfig {
	return admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: ns, Name: svc, Path: ptr.To("/validate")}}
}

// neverMatches keeps the test webhooks (served by nobody) out of every real request.
var neverMatches = &metav1.LabelSelector{MatchLabels: map[string]string{"kdc-test": "never"}}

func validatingWebhook(ns, svc, injectFrom string) *admissionv1.ValidatingWebhookConfiguration {
	return &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "kdc-test-" + ns, Annotations: map[string]string{cmapi.WantInjectAnnotation: injectFrom}},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:                    "validate.kdc-test.kube-dc.com",
			ClientConfig:            webhookClientConfig(ns, svc),
			Rules:                   webhookRules(),
			FailurePolicy:           ptr.To(admissionv1.Ignore),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			ObjectSelector:          neverMatches,
		}},
	}
}

func mutatingWebhook(ns, svc, injectFrom string) *admissionv1.MutatingWebhookConfiguration {
	return &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "kdc-test-" + ns, Annotations: map[string]string{cmapi.WantInjectAnnotation: injectFrom}},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:                    "mutate.kdc-test.kube-dc.com",
			ClientConfig:            webhookClientConfig(ns, svc),
			Rules:                   webhookRules(),
			FailurePolicy:           ptr.To(admissionv1.Ignore),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			ObjectSelector:          neverMatches,
		}},
	}
}

func webhookRules() []admissionv1.RuleWithOperations {
	return []admissionv1.RuleWithOperations{{
		Operations: []admissionv1.OperationType{admissionv1.Create},
		Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
}

func crdName(ns string) string { return "widgets." + ns + ".kdc-test.kube-dc.com" }

// conversionCRD has two versions converted by a webhook (never called: no objects exist).
func conversionCRD(ns, svc, injectFrom string) *apiextensionsv1.CustomResourceDefinition {
	schema := &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
		Type: "object", XPreserveUnknownFields: ptr.To(true),
	}}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: crdName(ns), Annotations: map[string]string{cmapi.WantInjectAnnotation: injectFrom}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: ns + ".kdc-test.kube-dc.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Kind: "Widget", ListKind: "WidgetList", Singular: "widget"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{
				{Name: "v1", Served: true, Storage: true, Schema: schema},
				{Name: "v2", Served: true, Schema: schema},
			},
			Conversion: &apiextensionsv1.CustomResourceConversion{
				Strategy: apiextensionsv1.WebhookConverter,
				Webhook: &apiextensionsv1.WebhookConversion{
					ClientConfig: &apiextensionsv1.WebhookClientConfig{
						Service: &apiextensionsv1.ServiceReference{Namespace: ns, Name: svc, Path: ptr.To("/convert")},
					},
					ConversionReviewVersions: []string{"v1"},
				},
			},
		},
	}
}

func getCert(ctx context.Context, g gomega.Gomega, c client.Client, ns, name string) *cmapi.Certificate {
	var crt cmapi.Certificate
	g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &crt)).To(gomega.Succeed())
	return &crt
}

func waitReady(ctx context.Context, g gomega.Gomega, c client.Client, ns, name string) {
	g.Eventually(func(g gomega.Gomega) {
		crt := getCert(ctx, g, c, ns, name)
		g.Expect(crt.Status.Conditions).To(gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", cmapi.CertificateConditionReady),
			gomega.HaveField("Status", cmmeta.ConditionTrue),
			gomega.HaveField("ObservedGeneration", crt.Generation),
		)), "Certificate %s/%s Ready", ns, name)
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(poll).Should(gomega.Succeed())
}

// renew triggers a renewal as `cmctl renew` does and returns the revision before it.
func renew(ctx context.Context, g gomega.Gomega, c client.Client, ns, name string) int {
	crt := getCert(ctx, g, c, ns, name)
	g.Expect(crt.Status.Revision).NotTo(gomega.BeNil())
	revision := *crt.Status.Revision
	cmapiutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
		"ManuallyTriggered", "Certificate re-issuance manually triggered")
	g.Expect(c.Status().Update(ctx, crt)).To(gomega.Succeed())
	return revision
}

func secret(ctx context.Context, g gomega.Gomega, c client.Client, ns, name string) *corev1.Secret {
	var s corev1.Secret
	g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s)).To(gomega.Succeed())
	return &s
}

func parseCert(g gomega.Gomega, data []byte) *x509.Certificate {
	block, _ := pem.Decode(data)
	g.Expect(block).NotTo(gomega.BeNil(), "PEM certificate")
	crt, err := x509.ParseCertificate(block.Bytes)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	return crt
}

// verifyServing checks the serving Secret: its key matches its certificate, which verifies for
// server auth against the Secret's ca.crt for every DNS name.
func verifyServing(g gomega.Gomega, s *corev1.Secret, dnsNames []string) {
	_, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	g.Expect(err).NotTo(gomega.HaveOccurred(), "tls.key matches tls.crt")
	roots := x509.NewCertPool()
	g.Expect(roots.AppendCertsFromPEM(s.Data[cmmeta.TLSCAKey])).To(gomega.BeTrue())
	leaf := parseCert(g, s.Data[corev1.TLSCertKey])
	g.Expect(leaf.DNSNames).To(gomega.ConsistOf(dnsNames))
	for _, name := range dnsNames {
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		g.Expect(err).NotTo(gomega.HaveOccurred(), "certificate verifies for %s", name)
	}
}

// dumpOnFailure logs the cert-manager objects of ns when the test failed.
func dumpOnFailure(t *testing.T, c client.Client, ns string) {
	if !t.Failed() {
		return
	}
	ctx := context.Background()
	var crts cmapi.CertificateList
	if err := c.List(ctx, &crts, client.InNamespace(ns)); err == nil {
		for _, crt := range crts.Items {
			t.Logf("Certificate %s: revision %v conditions %+v", crt.Name, ptr.Deref(crt.Status.Revision, 0), crt.Status.Conditions)
		}
	}
	var crs cmapi.CertificateRequestList
	if err := c.List(ctx, &crs, client.InNamespace(ns)); err == nil {
		for _, cr := range crs.Items {
			t.Logf("CertificateRequest %s: conditions %+v", cr.Name, cr.Status.Conditions)
		}
	}
	var iss cmapi.IssuerList
	if err := c.List(ctx, &iss, client.InNamespace(ns)); err == nil {
		for _, i := range iss.Items {
			t.Logf("Issuer %s: conditions %+v", i.Name, i.Status.Conditions)
		}
	}
}
