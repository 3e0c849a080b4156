package v1alpha1

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
)

// SnapshotTimeLayout is the UTC timestamp in a snapshot key.
const SnapshotTimeLayout = "20060102T150405Z"

// MaxSnapshotKeyLength bounds restore-from: two maximal object names, a slash and the suffix.
const MaxSnapshotKeyLength = 2*validation.DNS1123SubdomainMaxLength + 1 + len("-"+SnapshotTimeLayout+".db")

// SnapshotKey is the object key C/C-<ts>.db of a snapshot of cluster taken at t.
func SnapshotKey(cluster string, t time.Time) string {
	return cluster + "/" + cluster + "-" + t.UTC().Format(SnapshotTimeLayout) + ".db"
}

// ErrForeignKey is wrapped by ParseSnapshotKey's error when the key is well formed but names
// another cluster.
var ErrForeignKey = errors.New("key belongs to another cluster")

// ParseSnapshotKey checks that key is exactly C/C-<ts>.db and returns the cluster C and the
// timestamp. It is strict: no other prefix or bucket, no "..", no leading "/", no whitespace or
// control characters, a timestamp that round-trips. When cluster is not empty, a well-formed key
// of another cluster returns an error wrapping ErrForeignKey.
func ParseSnapshotKey(key, cluster string) (string, time.Time, error) {
	if strings.TrimSpace(key) == "" {
		return "", time.Time{}, errors.New("key is empty")
	}
	if len(key) > MaxSnapshotKeyLength {
		return "", time.Time{}, fmt.Errorf("key is %d bytes long, more than %d", len(key), MaxSnapshotKeyLength)
	}
	for _, r := range key {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r > unicode.MaxASCII {
			return "", time.Time{}, fmt.Errorf("key contains the character %q; keys are plain ASCII", r)
		}
	}
	if strings.HasPrefix(key, "/") {
		return "", time.Time{}, errors.New("key is an absolute path; give it relative to the bucket")
	}
	if strings.Contains(key, "s3://") || strings.Contains(key, "://") {
		return "", time.Time{}, errors.New("key is a URL; give only the object key, without bucket")
	}
	parts := strings.Split(key, "/")
	for _, p := range parts {
		if p == ".." || p == "." || p == "" {
			return "", time.Time{}, errors.New("key contains an empty, \".\" or \"..\" path element")
		}
	}
	if len(parts) != 2 {
		return "", time.Time{}, fmt.Errorf("key has %d path elements; want exactly <cluster>/<cluster>-<timestamp>.db", len(parts))
	}
	dir, file := parts[0], parts[1]
	if errs := validation.IsDNS1123Subdomain(dir); len(errs) > 0 {
		return "", time.Time{}, fmt.Errorf("key prefix %q is not a cluster name: %s", dir, strings.Join(errs, "; "))
	}
	if !strings.HasSuffix(file, ".db") {
		return "", time.Time{}, fmt.Errorf("file %q does not end in .db", file)
	}
	stem := strings.TrimSuffix(file, ".db")
	if len(stem) <= len(SnapshotTimeLayout)+1 || stem[len(stem)-len(SnapshotTimeLayout)-1] != '-' {
		return "", time.Time{}, fmt.Errorf("file %q is not <cluster>-<timestamp>.db with timestamp like %s", file, SnapshotTimeLayout)
	}
	fileCluster, ts := stem[:len(stem)-len(SnapshotTimeLayout)-1], stem[len(stem)-len(SnapshotTimeLayout):]
	if fileCluster != dir {
		return "", time.Time{}, fmt.Errorf("file %q does not belong to prefix %q", file, dir+"/")
	}
	t, err := time.Parse(SnapshotTimeLayout, ts)
	if err != nil || t.Format(SnapshotTimeLayout) != ts {
		return "", time.Time{}, fmt.Errorf("timestamp %q is not a UTC time like %s", ts, SnapshotTimeLayout)
	}
	if cluster != "" && dir != cluster {
		return dir, t, fmt.Errorf("%w %q, not to %q", ErrForeignKey, dir, cluster)
	}
	return dir, t, nil
}
