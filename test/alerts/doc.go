// Package alerts checks the PrometheusRule's rule file and the Grafana dashboard of
// charts/kdc-etcd-backup/files: promtool's rule unit tests pass, every alert has a runbook in
// docs/alerts.md and a test, and every query parses and reads only metrics the manager serves.
package alerts
