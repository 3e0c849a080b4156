// Package backup holds the integration tests of the backup controller: a real kube-apiserver and
// etcd (envtest) plus the real kube-controller-manager running the CronJob and Job controllers.
// No kubelet runs, so the tests play it: they mark the backup Jobs' pods Succeeded or Failed
// with the container's exit code and termination message, as the backup subcommand would leave
// them (docs/jobs.md). The benchmark of 1,000 clusters lives in bench_test.go.
package backup
