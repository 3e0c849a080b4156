// Command kdc-etcd-backup-manager runs the admission webhook and the controller (the manager
// Deployment). It is a binary of its own so that the Jobs' binary, kdc-etcd-backup, links none
// of the manager's packages and starts without their initialization (docs/benchmarks.md,
// "Prefix mode").
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"kube-dc.com/etcd-backup/version"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-version" || os.Args[1] == "version") {
		fmt.Println(version.String())
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(runManager(ctx, os.Args[1:]))
}
