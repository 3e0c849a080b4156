package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCollector checks what each subcommand runs with after the package inits (which run with
// the collector off, internal/initgc).
func TestCollector(t *testing.T) {
	type gc struct {
		Percent     int
		MemoryLimit int64
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want gc
	}{
		{"manager: collector on at 50", []string{"manager"}, nil, gc{50, math.MaxInt64}},
		{"manager with GOGC set: the environment's", []string{"manager"}, map[string]string{"GOGC": "80"}, gc{100, math.MaxInt64}},
		{"backup: on (its buffers follow the data; it sets its own limit)", []string{"backup"}, nil, gc{100, math.MaxInt64}},
		{"restore: off, soft limit", []string{"restore", "--key", "k"}, nil, gc{-1, shortJobMemoryLimit}},
		{"verify: off, soft limit", []string{"verify"}, nil, gc{-1, shortJobMemoryLimit}},
		{"rollback: off, soft limit", []string{"rollback"}, nil, gc{-1, shortJobMemoryLimit}},
		{"restore with GOGC set: the environment's", []string{"restore"}, map[string]string{"GOGC": "50"}, gc{100, math.MaxInt64}},
		{"restore with GOMEMLIMIT set: the environment's", []string{"restore"}, map[string]string{"GOMEMLIMIT": "1GiB"}, gc{100, math.MaxInt64}},
		{"no arguments: on", nil, nil, gc{100, math.MaxInt64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			debug.SetGCPercent(-1) // as the package inits leave it
			collector(tc.args)
			// Reading either setting means setting it: put the defaults back.
			got := gc{Percent: debug.SetGCPercent(100), MemoryLimit: debug.SetMemoryLimit(math.MaxInt64)}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("collector settings mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
