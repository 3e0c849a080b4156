// Package initgc keeps the garbage collector off while the binary's packages initialize.
//
// The one binary links client-go, controller-runtime and the etcd server packages into every
// subcommand, and their package initializers allocate about 4 MiB: enough for the collector to
// start its background workers and run twice before main, which is about a quarter of the
// binary's start-up CPU. A backup or restore Job is a short process whose start-up is part of
// every snapshot's duration (docs/benchmarks.md), so the collector waits until main, which calls
// Restore first. This package imports only runtime/debug, so it initializes before the heavy
// packages (Go initializes a package as soon as its imports are).
package initgc

import "runtime/debug"

// percent is the GOGC setting at start-up (100, or the GOGC environment variable).
var percent = debug.SetGCPercent(-1)

// Restore turns the collector back on with the start-up setting. main calls it first.
func Restore() { debug.SetGCPercent(percent) }
