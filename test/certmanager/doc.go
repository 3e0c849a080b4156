// Package certmanager runs cert-manager's real controllers and CA injector in-process, for the
// integration tests and the demo, against a real kube-apiserver (test/framework).
//
// cert-manager's command binaries (cmd/controller, cmd/cainjector) are separate Go modules that
// are not on the module proxy, but everything they run is in the library module
// github.com/cert-manager/cert-manager. Start wires those library packages the way
// cmd/controller/app and cmd/cainjector/app do:
//
//   - the controllers, from pkg/controller's registry (controller.Known(), filled by the
//     packages' init functions) and a pkg/controller ContextFactory: issuers, clusterissuers,
//     certificaterequests-approver, certificaterequests-issuer-ca,
//     certificaterequests-issuer-selfsigned and the certificates controllers (trigger,
//     key-manager, request-manager, issuing, readiness, revision-manager);
//   - the CA injector (pkg/controller/cainjector) in a controller-runtime manager, injecting
//     from Certificates (cert-manager.io/inject-ca-from), Secrets
//     (cert-manager.io/inject-ca-from-secret) and the API server's own CA
//     (cert-manager.io/inject-apiserver-ca) into Mutating- and ValidatingWebhookConfigurations,
//     CRD conversion webhooks and APIServices.
//
// So the chain the product's install uses works end to end: self-signed Issuer or ClusterIssuer
// -> CA Certificate -> CA Issuer -> serving Certificate -> Secret (tls.crt, tls.key, ca.crt) ->
// caBundle of the webhook configurations, including renewal and re-issuance of a deleted Secret.
//
// What does not run: ACME (orders, challenges), Vault, Venafi, the CertificateSigningRequest
// controllers, the ingress and Gateway shims, the metrics controller and server, the healthz
// and pprof servers, leader election, and cert-manager's own admission webhook (so cert-manager
// objects are not defaulted or validated by it; the CRDs' OpenAPI schemas still apply, and the
// approver controller approves every CertificateRequest for cert-manager.io issuers, as in a
// default install).
//
// CRDs: CRDDir, CRDPaths and InstallCRDs (thin wrappers of package crds, which tests that need
// only the CRDs import so as not to compile cert-manager's controllers) use the CRD files of the
// cert-manager module's deploy/crds directory, found in the module cache with `go list -m` (and
// `go mod download` when absent). In v1.21 these are plain YAML (no Helm templating), so they
// are used as they are.
//
// Known leftovers: cert-manager's controller contexts start event broadcasters that cert-manager
// itself never shuts down, so a few idle goroutines outlive stop. The CA injector's reconcilers
// log to controller-runtime's global logger (ctrl.Log); set it (ctrl.SetLogger) to see or
// silence them.
package certmanager
