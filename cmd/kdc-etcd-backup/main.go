// Command kdc-etcd-backup is the one binary of kdc-etcd-backup. Its subcommands:
//
//	manager   the admission webhook and the controller (runs in the manager Deployment)
//	backup    stream an etcd snapshot to S3 (runs in the backup CronJob's Jobs)
//	restore   restore a snapshot into the etcd data directory (runs in the restore Job)
//	verify    download a snapshot and check it without touching any data (restore pre-flight)
//	rollback  swap the previous etcd data directory back (runs after a failed restore)
//	prefix-backup, prefix-restore, prefix-verify, prefix-inspect
//	          the same for one tenant's etcd key prefix on a shared datastore
//
// main stays thin: it dispatches to the subcommand, which parses its own flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	// First of this binary's packages to initialize: the collector waits for main.
	"kube-dc.com/etcd-backup/cmd/kdc-etcd-backup/internal/initgc"
	"kube-dc.com/etcd-backup/version"
)

type subcommand struct {
	summary string
	run     func(ctx context.Context, args []string) int
	// smallHeap: the heap stays a few MiB whatever the snapshot's size, so the collector stays
	// off after the package inits (collector).
	smallHeap bool
	// gcPercent, when set, is the collector's GOGC after the package inits.
	gcPercent int
}

var subcommands = map[string]subcommand{
	// The manager's heap is its informer caches; a lower GOGC bounds the garbage on top of them
	// (docs/benchmarks.md, "Backup controller").
	"manager":  {"run the admission webhook and the controller", runManager, false, 50},
	"backup":   {"stream an etcd snapshot to S3 (the backup CronJob's Jobs)", runBackup, false, 0},
	"restore":  {"restore a snapshot into the etcd data directory (the restore Job)", runRestore, true, 0},
	"verify":   {"download a snapshot and check it, touching no data (restore pre-flight)", runVerify, true, 0},
	"rollback": {"swap the previous etcd data directory back after a failed restore", runRollback, true, 0},
	// Shared datastores: one tenant's key prefix through the etcd API (docs/jobs.md, "Prefix mode").
	"prefix-backup":  {"stream one tenant's etcd key prefix to S3 (shared datastores)", runPrefixBackup, false, 0},
	"prefix-restore": {"converge one tenant's etcd key prefix to a prefix snapshot, or --undo", runPrefixRestore, false, 0},
	"prefix-verify":  {"download a prefix snapshot and check it, touching nothing", runPrefixVerify, true, 0},
	"prefix-inspect": {"print a prefix snapshot's header, keys and trailer", runPrefixInspect, true, 0},
}

func main() {
	collector(os.Args[1:])
	os.Exit(dispatch(os.Args[1:]))
}

// collector turns the garbage collector back on after the package inits (initgc), except for
// the subcommands with a small heap: restore and verify stream through four 1 MiB buffers into
// files and etcdutl (a 200 MB restore allocates 6 MiB in all), rollback renames directories. For
// them a collection is work that frees nothing a Job needs back, so the collector stays off with
// a soft memory limit of shortJobMemoryLimit as the safety net (GOGC or GOMEMLIMIT in the
// environment take precedence).
func collector(args []string) {
	var sc subcommand
	if len(args) > 0 {
		sc = subcommands[args[0]]
	}
	switch {
	case sc.smallHeap:
		initgc.KeepOff(shortJobMemoryLimit)
	case sc.gcPercent != 0:
		initgc.RestoreAt(sc.gcPercent)
	default:
		initgc.Restore()
	}
}

// shortJobMemoryLimit is the soft memory limit of restore, verify and rollback: several times
// what they allocate, and under the verify Job's 256 MiB limit.
const shortJobMemoryLimit = 64 << 20

func dispatch(args []string) int {
	if len(args) == 0 {
		usage()
		return 64
	}
	switch args[0] {
	case "--version", "-version", "version":
		fmt.Println(version.String())
		return 0
	case "-h", "--help", "help":
		usage()
		return 0
	}
	sc, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "kdc-etcd-backup: unknown subcommand %q; run kdc-etcd-backup --help for the list\n", args[0])
		return 64
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return sc.run(ctx, args[1:])
}

func usage() {
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "Usage: kdc-etcd-backup <subcommand> [flags]\n\nSubcommands:\n")
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, subcommands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nkdc-etcd-backup <subcommand> --help shows its flags; --version prints the version.\n")
}
