// Package e2e is the end-to-end test of kdc-etcd-backup: the story `make demo` tells
// (test/e2e/demo), with assertions at each step, on real components on loopback brought up by
// test/e2e/env. It needs root (the node agent's mount namespaces) and the binaries of
// `make bins`; it builds the image (make image) and kubectl-kdc itself, and installs the manager
// with the Helm chart, so the manager and every Job run the image.
//
// TestEndToEnd walks: environment up; tenant cluster (etcd v3.5.35) laid out as on Kube-DC, a
// Kamaji TenantControlPlane owning its control plane Deployment (test/kamaji's stand-in undoes a
// scale of it), padded to ~20 MB; a backup
// Job from the CronJob uploads a snapshot; tenant objects are changed after it; the webhook
// rejects a foreign key, a malformed key and a second restore while one runs; the restore runs
// through every phase, the TenantControlPlane paused from before the end of the drain until the
// control plane is ready (no pod of it in between, recorded by a watch), and the tenant then
// serves exactly the snapshot's objects (the RTO and its
// per-phase breakdown are logged beside the same steps done directly: etcdutl, etcd and
// kube-apiserver as plain processes); of two concurrent requests exactly one is admitted; a
// snapshot corrupted in the bucket fails the restore in Validating with nothing changed; and a
// snapshot corrupted after validation (during the drain) fails the restore Job, after which the
// controller brings the cluster back on its old data. Then the datastore topologies
// (topologies_test.go): a second tenant joins the first one's datastore with an etcd prefix
// that shares a leading string with the first's (/demo_tenant, /demo_tenant_b), both CronJobs
// turn to prefix-backup, each stored object holds its tenant's keys only, and the first tenant
// is restored in prefix mode while a client polls the second's API server (no error, objects
// and resourceVersions unchanged); and a tenant on a dedicated 3-member datastore is restored,
// etcdctl then showing 3 started members, one cluster ID and one leader, its RTO logged beside
// the 1-member restore's.
//
// BenchmarkRestoreRTO measures the RTO of the same ~20 MB restore repeatedly (docs/benchmarks.md).
package e2e
