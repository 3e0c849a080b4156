// Package plugin holds the integration tests of the kubectl-kdc commands `backups` and `backup`
// on real components: envtest's kube-apiserver and etcd, the real kube-controller-manager (Job and
// CronJob controllers), the real backup controller, a real MinIO and a real etcd whose snapshots
// the real backup code path uploads. The plugin runs in-process (plugin.Execute with the envtest
// kubeconfig), and once through the built kubectl's plugin discovery. No kubelet runs, so the
// tests play it for the backup Job's pod, as test/backup does.
package plugin
