// Package restore holds the integration tests of the restore controller: envtest (a real
// kube-apiserver and etcd) plus the real kube-controller-manager (Deployment, ReplicaSet,
// StatefulSet, Job, CronJob and garbage-collector controllers), with the test playing the
// kubelet (kubelet_test.go): it marks pods Ready, finishes Job pods with exit codes and
// termination messages, and can hold any step (a pod's deletion, readiness, a Job) so a test can
// stop and restart the manager inside every phase.
package restore
