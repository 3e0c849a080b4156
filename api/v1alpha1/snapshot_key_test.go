package v1alpha1

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSnapshotKey(t *testing.T) {
	ts := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	long := strings.Repeat("a", 253)
	type result struct {
		Cluster string
		Time    time.Time
		Err     string // substring of the error; "" for none
		Foreign bool
	}
	tests := []struct {
		name, key, cluster string
		want               result
	}{
		{"valid", "c1/c1-20260101T020000Z.db", "c1", result{Cluster: "c1", Time: ts}},
		{"valid without cluster", "c1/c1-20260101T020000Z.db", "", result{Cluster: "c1", Time: ts}},
		{"valid dotted name", "a.b-c/a.b-c-20260101T020000Z.db", "a.b-c", result{Cluster: "a.b-c", Time: ts}},
		{"valid longest name", long + "/" + long + "-20260101T020000Z.db", long, result{Cluster: long, Time: ts}},
		{"foreign", "c2/c2-20260101T020000Z.db", "c1", result{Cluster: "c2", Time: ts, Err: `belongs to another cluster "c2", not to "c1"`, Foreign: true}},
		{"empty", "", "c1", result{Err: "key is empty"}},
		{"whitespace only", " \t\n", "c1", result{Err: "key is empty"}},
		{"leading space", " c1/c1-20260101T020000Z.db", "c1", result{Err: "character ' '"}},
		{"trailing newline", "c1/c1-20260101T020000Z.db\n", "c1", result{Err: `character '\n'`}},
		{"control character", "c1/c1-2026\x000101T020000Z.db", "c1", result{Err: `character '\x00'`}},
		{"non ascii", "c1/c1-20260101T020000Z.db\u00e9", "c1", result{Err: "plain ASCII"}},
		{"too long", strings.Repeat("a", MaxSnapshotKeyLength+1), "c1", result{Err: "bytes long"}},
		{"absolute", "/c1/c1-20260101T020000Z.db", "c1", result{Err: "absolute path"}},
		{"url", "s3://bucket/c1/c1-20260101T020000Z.db", "c1", result{Err: "is a URL"}},
		{"traversal", "c1/../c1/c1-20260101T020000Z.db", "c1", result{Err: `".."`}},
		{"traversal file", "../c1-20260101T020000Z.db", "c1", result{Err: `".."`}},
		{"dot", "./c1-20260101T020000Z.db", "c1", result{Err: `"."`}},
		{"double slash", "c1//c1-20260101T020000Z.db", "c1", result{Err: "empty"}},
		{"other prefix", "backups/c1/c1-20260101T020000Z.db", "c1", result{Err: "3 path elements"}},
		{"no prefix", "c1-20260101T020000Z.db", "c1", result{Err: "1 path elements"}},
		{"upper case prefix", "C1/C1-20260101T020000Z.db", "C1", result{Err: "not a cluster name"}},
		{"wrong suffix", "c1/c1-20260101T020000Z.tar", "c1", result{Err: "does not end in .db"}},
		{"file of other cluster", "c1/c2-20260101T020000Z.db", "c1", result{Err: `does not belong to prefix "c1/"`}},
		{"no timestamp", "c1/c1.db", "c1", result{Err: "is not <cluster>-<timestamp>.db"}},
		{"short timestamp", "c1/c1-20260101T0200Z.db", "c1", result{Err: "is not <cluster>-<timestamp>.db"}},
		{"month 13", "c1/c1-20261301T020000Z.db", "c1", result{Err: "is not a UTC time"}},
		{"february 30", "c1/c1-20260230T020000Z.db", "c1", result{Err: "is not a UTC time"}},
		{"hour 24", "c1/c1-20260101T240000Z.db", "c1", result{Err: "is not a UTC time"}},
		{"local time", "c1/c1-20260101T020000+.db", "c1", result{Err: "is not a UTC time"}},
		{"lower case z", "c1/c1-20260101t020000z.db", "c1", result{Err: "is not a UTC time"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ts, err := ParseSnapshotKey(tt.key, tt.cluster)
			got := result{Cluster: c, Time: ts, Foreign: errors.Is(err, ErrForeignKey)}
			if err != nil {
				got.Err = tt.want.Err
				if !strings.Contains(err.Error(), tt.want.Err) || tt.want.Err == "" {
					got.Err = err.Error()
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseSnapshotKey(%q, %q) mismatch (-want +got):\n%s", tt.key, tt.cluster, diff)
			}
		})
	}
}

func TestSnapshotKeyRoundTrip(t *testing.T) {
	at := time.Date(2026, 7, 4, 13, 5, 9, 999, time.FixedZone("CEST", 2*3600))
	key := SnapshotKey("prod-eu", at)
	if want := "prod-eu/prod-eu-20260704T110509Z.db"; key != want {
		t.Fatalf("SnapshotKey() = %q, want %q", key, want)
	}
	c, ts, err := ParseSnapshotKey(key, "prod-eu")
	if err != nil {
		t.Fatalf("ParseSnapshotKey(%q) failed: %v", key, err)
	}
	if diff := cmp.Diff([]any{"prod-eu", at.UTC().Truncate(time.Second)}, []any{c, ts}); diff != "" {
		t.Errorf("ParseSnapshotKey(SnapshotKey()) mismatch (-want +got):\n%s", diff)
	}
}

// FuzzParseSnapshotKey checks the parser's invariants: an accepted key is exactly the key
// SnapshotKey builds for the parsed cluster and time, contains no traversal, and belongs to
// the given cluster. The seeds run with plain `go test`.
func FuzzParseSnapshotKey(f *testing.F) {
	for _, seed := range []struct{ key, cluster string }{
		{"c1/c1-20260101T020000Z.db", "c1"},
		{"c1/c1-20260101T020000Z.db", ""},
		{"c2/c2-20260101T020000Z.db", "c1"},
		{"../c1/c1-20260101T020000Z.db", "c1"},
		{"/c1/c1-20260101T020000Z.db", "c1"},
		{"s3://b/c1/c1-20260101T020000Z.db", "c1"},
		{"c1/c1-20261301T020000Z.db", "c1"},
		{"c1/c1-20260101T020000Z.db\x00", "c1"},
		{" ", "c1"},
		{"a.b/a.b-20991231T235959Z.db", "a.b"},
		{"c1/c1--20260101T020000Z.db", "c1"},
		{"c1-/c1--20260101T020000Z.db", "c1-"},
	} {
		f.Add(seed.key, seed.cluster)
	}
	f.Fuzz(func(t *testing.T, key, cluster string) {
		c, ts, err := ParseSnapshotKey(key, cluster)
		if err != nil {
			if errors.Is(err, ErrForeignKey) && (cluster == "" || c == cluster) {
				t.Fatalf("ParseSnapshotKey(%q, %q) = foreign key error for its own cluster %q", key, cluster, c)
			}
			return
		}
		if cluster != "" && c != cluster {
			t.Fatalf("ParseSnapshotKey(%q, %q) accepted a key of cluster %q", key, cluster, c)
		}
		if rebuilt := SnapshotKey(c, ts); rebuilt != key {
			t.Fatalf("ParseSnapshotKey(%q, %q) accepted a key that is not canonical: SnapshotKey() = %q", key, cluster, rebuilt)
		}
		if strings.Contains(key, "..") || strings.HasPrefix(key, "/") || len(key) > MaxSnapshotKeyLength {
			t.Fatalf("ParseSnapshotKey(%q, %q) accepted an unsafe key", key, cluster)
		}
	})
}
