// Package datapath holds the integration tests and benchmarks of the Job-side data path
// (package snapshot) against real processes only: etcd v3.5, v3.6 and v3.7 with client TLS and a
// real MinIO, all on 127.0.0.1, started through test/framework. Run `make bins` first.
package datapath
