// Package initgc keeps the garbage collector off while the binary's packages initialize, and
// lets main decide what each subcommand needs afterwards.
//
// The one binary links client-go, controller-runtime and the etcd server packages into every
// subcommand, and their package initializers allocate about 4 MiB: enough for the collector to
// start its background workers and run twice before main, which is about a quarter of the
// binary's start-up CPU. A backup or restore Job is a short process whose start-up is part of
// every snapshot's duration (docs/benchmarks.md), so the collector waits until main. This
// package imports only runtime/debug, so it initializes before the heavy packages (Go
// initializes a package as soon as its imports are).
package initgc

import (
	"os"
	"runtime/debug"
)

// percent is the GOGC setting at start-up (100, or the GOGC environment variable).
var percent = debug.SetGCPercent(-1)

// Restore turns the collector back on with the start-up setting: for long-running processes
// and for those whose heap follows the data (the backup's part buffers).
func Restore() { debug.SetGCPercent(percent) }

// RestoreAt turns the collector back on at GC percent p, or with the environment's GOGC or
// GOMEMLIMIT when either is set.
func RestoreAt(p int) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		Restore()
		return
	}
	debug.SetGCPercent(p)
}

// KeepOff leaves the collector off for a short process whose heap stays small whatever the
// data: it runs only if the process's memory nears limit bytes (a soft limit, as GOMEMLIMIT).
// When GOGC or GOMEMLIMIT is set in the environment, those settings apply instead.
func KeepOff(limit int64) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		Restore()
		return
	}
	debug.SetMemoryLimit(limit)
}
