// Package env brings up, on loopback, the whole environment of the end-to-end story that both
// `make demo` (test/e2e/demo) and the e2e test (test/e2e) run: a management control plane
// (envtest's kube-apiserver and etcd plus a real kube-controller-manager), MinIO as the S3
// endpoint with the buckets and ObjectBucketClaim objects Rook would create, cert-manager's
// controllers and CA injector (test/certmanager), the node agent (test/nodeagent) that runs
// pods as local processes (the product's image from the archive `make image` builds from the
// working tree, unpacked into its own root filesystem), and the manager installed with the Helm
// chart through Helm's install action (Options.Install: or `kubectl apply -k manifests/default`).
//
// On top of it, Tenant lays out a tenant cluster as Kube-DC does (KdcClusterDatastore, an etcd
// StatefulSet DS-etcd with TLS and a data PVC, a Kamaji TenantControlPlane C-cp owning the
// control-plane Deployment C-cp running a real kube-apiserver, the KdcCluster), with the Kamaji
// stand-in (test/kamaji) running in this process; kamaji.go records the control plane's pods and
// TenantControlPlane through a restore and checks them against its phases; story.go holds the steps of the story (backup Job,
// restore with phase timings from a watch, corrupting a snapshot in the bucket) shared by the
// demo, the test and the benchmark. direct.go times the restore's underlying steps done by hand
// (etcdutl, etcd and kube-apiserver as plain processes) and report.go prints them beside the
// controller's phases.
//
// kube-apiserver reaches the webhook without kube-proxy through the webhook Service's ClusterIP:
// the management kube-apiserver allocates ClusterIPs from a loopback block
// (nodeagent.ServiceCIDR) and the node agent forwards each ClusterIP:port to a ready pod, so TLS
// stays end to end and the certificate is verified for the Service's DNS name.
// --enable-aggregator-routing=true (routing to the Service's endpoints) does not work on
// loopback: Endpoints and EndpointSlices validation rejects 127.0.0.0/8 addresses ("may not be
// in the loopback range"), so the endpoint controllers never publish the manager pods.
//
// Everything Start starts, Stop ends, by PID (processes) or by cancelling what runs in-process.
package env
