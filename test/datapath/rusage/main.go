// Command rusage runs a command and writes the command's own resource usage as JSON: its peak
// RSS, CPU time and wall time. The benchmarks run the binary under test through it because a
// process started by a large one cannot report its own peak RSS: Go starts child processes with
// vfork (CLONE_VM), and at exec Linux folds the high-water RSS of the memory the child shared
// until then, the parent's, into the child's ru_maxrss. rusage is small, so the high-water mark
// it passes on is a few MiB, below anything the benchmarks measure.
//
//	rusage -o usage.json -- command [args...]
//
// It exits with the command's exit code (128+n when signal n killed it), or 125 when it cannot
// run it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Usage is what rusage writes.
type Usage struct {
	MaxRSS int64         `json:"maxRSS"` // bytes
	User   time.Duration `json:"user"`
	System time.Duration `json:"system"`
	Wall   time.Duration `json:"wall"`
}

func main() {
	out := flag.String("o", "", "file to write the JSON usage to")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: rusage -o usage.json -- command [args...]")
		os.Exit(125)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		fmt.Fprintf(os.Stderr, "rusage: %v\n", err)
		os.Exit(125)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	b, _ := json.Marshal(Usage{
		MaxRSS: ru.Maxrss * 1024, // kilobytes on Linux
		User:   time.Duration(ru.Utime.Nano()),
		System: time.Duration(ru.Stime.Nano()),
		Wall:   wall,
	})
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "rusage: %v\n", err)
		os.Exit(125)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		os.Exit(128 + int(ws.Signal()))
	}
	os.Exit(ws.ExitStatus())
}
