package main

import (
	"runtime/debug"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSetManagerGC(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"default: 50", nil, managerGCPercent},
		{"GOGC set: the environment's", map[string]string{"GOGC": "80"}, 100},
		{"GOMEMLIMIT set: the environment's", map[string]string{"GOMEMLIMIT": "1GiB"}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			debug.SetGCPercent(100)
			setManagerGC()
			if diff := cmp.Diff(tc.want, debug.SetGCPercent(100)); diff != "" {
				t.Errorf("GC percent mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
