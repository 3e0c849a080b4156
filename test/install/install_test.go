package install

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"kube-dc.com/etcd-backup/test/certmanager/crds"
	"kube-dc.com/etcd-backup/test/framework"
)

const (
	installDir = "manifests/default"
	namespace  = "kdc-etcd-backup-system"
)

// dryRunEnv starts a real kube-apiserver with cert-manager's CRDs and the install's namespace.
func dryRunEnv(t *testing.T) *framework.Env {
	t.Helper()
	cmCRDs, err := crds.Paths()
	if err != nil {
		t.Fatal(err)
	}
	env, err := framework.Start(framework.Options{ExtraCRDPaths: cmCRDs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	// A server-side dry-run persists nothing, so objects in the install's namespace would fail
	// with "namespace not found"; create it the way the first apply would.
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	return env
}

func TestServerSideDryRunOfTheInstall(t *testing.T) {
	env, ctx := dryRunEnv(t), context.Background()
	out, err := env.Kubectl(ctx, "apply", "--dry-run=server", "-k", filepath.Join(framework.RootDir(), installDir))
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k %s failed: %v\n%s", installDir, err, out)
	}
	expectDryRunObjects(t, out)
}

// expectDryRunObjects checks that a dry run's output names the install's main objects.
func expectDryRunObjects(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/kdcclusters.k8s.kube-dc.com",
		"deployment.apps/kdc-etcd-backup-manager",
		"service/kdc-etcd-backup-webhook-service",
		"certificate.cert-manager.io/kdc-etcd-backup-serving-cert",
		"issuer.cert-manager.io/kdc-etcd-backup-ca-issuer",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/kdc-etcd-backup-mutating-webhook-configuration",
		"validatingwebhookconfiguration.admissionregistration.k8s.io/kdc-etcd-backup-validating-webhook-configuration",
		"clusterrole.rbac.authorization.k8s.io/kdc-etcd-backup-manager",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
	}
}

func TestInstallPiecesAgree(t *testing.T) {
	objs := render(t)
	get := func(kind, name string) *unstructured.Unstructured {
		t.Helper()
		for _, o := range objs {
			if o.GetKind() == kind && o.GetName() == name {
				return o
			}
		}
		t.Fatalf("install has no %s %s", kind, name)
		return nil
	}

	svc := get("Service", "kdc-etcd-backup-webhook-service")
	if svc.GetNamespace() != namespace {
		t.Errorf("webhook Service is in %q, want %q", svc.GetNamespace(), namespace)
	}
	cert := get("Certificate", "kdc-etcd-backup-serving-cert")
	dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	wantDNS := []string{
		svc.GetName() + "." + namespace + ".svc",
		svc.GetName() + "." + namespace + ".svc.cluster.local",
	}
	if diff := cmp.Diff(wantDNS, dnsNames); diff != "" {
		t.Errorf("serving Certificate dnsNames do not match the Service (-want +got):\n%s", diff)
	}

	certRef := cert.GetNamespace() + "/" + cert.GetName()
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		var found bool
		for _, o := range objs {
			if o.GetKind() != kind {
				continue
			}
			found = true
			if got := o.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != certRef {
				t.Errorf("%s %s inject-ca-from = %q, want %q", kind, o.GetName(), got, certRef)
			}
			hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
			if len(hooks) == 0 {
				t.Errorf("%s %s has no webhooks", kind, o.GetName())
			}
			for _, h := range hooks {
				hook := h.(map[string]any)
				name, _, _ := unstructured.NestedString(hook, "name")
				svcName, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "name")
				svcNS, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "namespace")
				if svcName != svc.GetName() || svcNS != namespace {
					t.Errorf("webhook %s calls service %s/%s, want %s/%s", name, svcNS, svcName, namespace, svc.GetName())
				}
				if fp, _, _ := unstructured.NestedString(hook, "failurePolicy"); fp != "Fail" {
					t.Errorf("webhook %s failurePolicy = %q, want Fail", name, fp)
				}
				if ts := number(hook, "timeoutSeconds"); ts == 0 || ts > 10 {
					t.Errorf("webhook %s timeoutSeconds = %d, want a short timeout (1..10)", name, ts)
				}
			}
		}
		if !found {
			t.Errorf("install has no %s", kind)
		}
	}

	secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	dep := get("Deployment", "kdc-etcd-backup-manager")
	vols, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
	var mounted []string
	for _, v := range vols {
		if s, ok, _ := unstructured.NestedString(v.(map[string]any), "secret", "secretName"); ok {
			mounted = append(mounted, s)
		}
	}
	if !slices.Contains(mounted, secretName) {
		t.Errorf("Deployment mounts Secrets %v, want the serving Certificate's %q", mounted, secretName)
	}
	if r := number(dep.Object, "spec", "replicas"); r != 2 {
		t.Errorf("Deployment replicas = %d, want 2", r)
	}
	sa, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "serviceAccountName")
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, o := range objs {
			if o.GetKind() != kind {
				continue
			}
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subjects {
				m := s.(map[string]any)
				if m["name"] != sa || m["namespace"] != namespace {
					t.Errorf("%s %s binds %v/%v, want the manager's %s/%s", kind, o.GetName(), m["namespace"], m["name"], namespace, sa)
				}
			}
		}
	}
}

// render runs the built kubectl's kustomize on the install tree.
func render(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	out, err := runKubectl("kustomize", filepath.Join(framework.RootDir(), installDir))
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	return decode(t, out)
}

func runKubectl(args ...string) ([]byte, error) {
	bin, err := framework.RequireBinary(framework.Kubectl())
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bin, args...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return out, err
}

// number reads a numeric field of a decoded object (JSON numbers decode as float64).
func number(obj map[string]any, fields ...string) int64 {
	v, _, _ := unstructured.NestedFieldNoCopy(obj, fields...)
	switch n := v.(type) {
	case float64:
		return int64(n)
	case int64:
		return n
	}
	return 0
}
