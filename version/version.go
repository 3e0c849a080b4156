// Package version holds the build version of kdc-etcd-backup, set with -ldflags -X.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set at build time:
//
//	-ldflags "-X kube-dc.com/etcd-backup/version.Version=v0.1.0 -X kube-dc.com/etcd-backup/version.Commit=abc"
var (
	Version = "v0.0.0-dev"
	Commit  = ""
)

// String is the one-line version: "kdc-etcd-backup v0.1.0 (commit abc, go1.26.8)".
func String() string {
	commit := Commit
	if commit == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					commit = s.Value
				}
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("kdc-etcd-backup %s (commit %s, %s)", Version, commit, runtime.Version())
}
