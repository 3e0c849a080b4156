// Command kdc-etcd-backup is the binary the Jobs run. Its subcommands:
//
//	backup    stream an etcd snapshot to S3 (runs in the backup CronJob's Jobs)
//	restore   restore a snapshot into the etcd data directory (runs in the restore Job)
//	verify    download a snapshot and check it without touching any data (restore pre-flight)
//	rollback  swap the previous etcd data directory back (runs after a failed restore)
//	swap      swap a restore staged by restore --swap=false in (multi-member restores)
//	prefix-backup, prefix-restore, prefix-verify, prefix-inspect
//	          the same for one tenant's etcd key prefix on a shared datastore
//
// main stays thin: it dispatches to the subcommand, which parses its own flags. The manager is
// the image's other binary, kdc-etcd-backup-manager: linked here, its packages' initialization
// would add about 10 ms to every Job's start (docs/benchmarks.md, "Prefix mode").
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"kube-dc.com/etcd-backup/version"
)

type subcommand struct {
	summary string
	run     func(ctx context.Context, args []string) int
}

var subcommands = map[string]subcommand{
	"backup":   {"stream an etcd snapshot to S3 (the backup CronJob's Jobs)", runBackup},
	"restore":  {"restore a snapshot into the etcd data directory (the restore Job)", runRestore},
	"verify":   {"download a snapshot and check it, touching no data (restore pre-flight)", runVerify},
	"rollback": {"swap the previous etcd data directory back after a failed restore", runRollback},
	// Multi-member restores: restore --swap=false on every member, then swap on every member.
	"swap": {"swap a restore staged by restore --swap=false into the etcd data directory", runSwap},
	// Shared datastores: one tenant's key prefix through the etcd API (docs/jobs.md, "Prefix mode").
	"prefix-backup":  {"stream one tenant's etcd key prefix to S3 (shared datastores)", runPrefixBackup},
	"prefix-restore": {"converge one tenant's etcd key prefix to a prefix snapshot, or --undo", runPrefixRestore},
	"prefix-verify":  {"download a prefix snapshot and check it, touching nothing", runPrefixVerify},
	"prefix-inspect": {"print a prefix snapshot's header, keys and trailer", runPrefixInspect},
}

func main() {
	os.Exit(dispatch(os.Args[1:]))
}

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
	if !ok && args[0] == "manager" {
		fmt.Fprintf(os.Stderr, "kdc-etcd-backup: the manager is the image's other binary: run /kdc-etcd-backup-manager with the same flags\n")
		return 64
	}
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
