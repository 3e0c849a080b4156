// Package webhook is the integration suite of the admission webhooks: a real kube-apiserver and
// etcd (envtest) calls the webhooks, served by a real controller-runtime webhook server on
// loopback and registered from the generated manifests/webhook configurations. It covers every
// rejection and acceptance, the identity rules, 20 concurrent restore requests, the text a
// new user sees through the built kubectl, a webhook that is down, and the admission latency
// benchmark (BenchmarkAdmission).
package webhook
