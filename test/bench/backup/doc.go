// Package backup benchmarks the backup controller at scale (issue 4): N KdcClusters (default
// 1,000), each in its own namespace with a Bound ObjectBucketClaim, its ConfigMap, a
// KdcClusterDatastore and the datastore's etcd StatefulSet, are created on a real
// kube-apiserver (envtest) before the manager starts. The manager runs as a separate process
// (the real binary, `manager` subcommand) so its peak RSS comes from rusage. It prints the time
// until every CronJob exists and every BackupReady is True, the peak RSS and the API requests per
// cluster (the manager's own rest_client_requests_total). Figures, not assertions; see
// docs/benchmarks.md for the command and the numbers.
package backup
