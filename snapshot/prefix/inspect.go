package prefix

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"kube-dc.com/etcd-backup/snapshot"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Key is the snapshot key C/C-<ts>.db, or any object of this tool in prefix form (a
	// pre-restore copy) when Cluster is empty.
	Key string
	// Cluster, when set, must own Key and be the snapshot's cluster.
	Cluster string
	// Prefix, when set, must be the snapshot's prefix.
	Prefix      string
	Location    snapshot.S3Location
	Credentials snapshot.Credentials
	Logger      *slog.Logger
}

// VerifyResult is prefix-verify's termination message.
type VerifyResult struct {
	Key             string  `json:"key"`
	ObjectKey       string  `json:"objectKey"`
	Bucket          string  `json:"bucket"`
	Size            int64   `json:"size"`
	SHA256          string  `json:"sha256"`
	Prefix          string  `json:"prefix"`
	Purpose         string  `json:"purpose"`
	Revision        int64   `json:"revision"`
	Keys            int64   `json:"keys"`
	Leases          int     `json:"leases"`
	EtcdVersion     string  `json:"etcdVersion"`
	DurationSeconds float64 `json:"durationSeconds"`
}

// Verify downloads a prefix snapshot as a stream and runs every check a restore runs before
// its first write, writing nothing anywhere.
func Verify(ctx context.Context, o VerifyOptions) (*VerifyResult, error) {
	start := time.Now()
	if o.Key == "" {
		return nil, errorf(snapshot.ExitUsage, "--key is required")
	}
	if err := o.Location.Validate(); err != nil {
		return nil, err
	}
	res := &VerifyResult{Key: o.Key, ObjectKey: o.Location.ObjectKey(o.Key), Bucket: o.Location.Bucket}
	s3c := snapshot.NewS3Client(o.Location, o.Credentials)
	obj, err := snapshot.OpenVerified(ctx, s3c, o.Location, res.ObjectKey)
	if err != nil {
		return res, err
	}
	defer obj.Close()
	rd, err := NewReader(obj)
	if err == nil {
		var r Record
		for err = rd.Next(&r); err == nil; err = rd.Next(&r) {
		}
	}
	var se *snapshot.Error
	switch {
	case errors.As(err, &se):
		return res, se
	case !errors.Is(err, io.EOF):
		return res, errorf(snapshot.ExitIntegrity, "s3://%s/%s: %w; use another snapshot", o.Location.Bucket, res.ObjectKey, err)
	}
	h, tr := rd.Header(), rd.Trailer()
	res.Size, res.SHA256, res.Prefix, res.Purpose, res.Revision = obj.Size, obj.SHA256(), h.Prefix, h.Purpose, h.Revision
	res.Keys, res.Leases, res.EtcdVersion = tr.Keys, len(tr.Leases), h.EtcdVersion
	if o.Prefix != "" {
		rng, err := RangeOf(o.Prefix)
		if err != nil {
			return res, errorf(snapshot.ExitUsage, "--etcd-prefix: %w", err)
		}
		if h.Prefix != rng.Prefix {
			return res, errorf(snapshot.ExitUsage, "s3://%s/%s holds etcd prefix %q, not %q; use a snapshot of this cluster's prefix", o.Location.Bucket, res.ObjectKey, h.Prefix, rng.Prefix)
		}
	}
	if o.Cluster != "" && h.Cluster != o.Cluster {
		return res, errorf(snapshot.ExitUsage, "s3://%s/%s was taken for cluster %q, not %q", o.Location.Bucket, res.ObjectKey, h.Cluster, o.Cluster)
	}
	res.DurationSeconds = time.Since(start).Seconds()
	if o.Logger != nil {
		o.Logger.Info("Verified prefix snapshot", "objectKey", res.ObjectKey, "prefix", res.Prefix, "keys", res.Keys, "sha256", res.SHA256)
	}
	return res, nil
}

// InspectOptions say what Inspect prints.
type InspectOptions struct {
	// Values prints each value too (quoted); otherwise only its size.
	Values bool
}

// Inspect prints a prefix snapshot for an operator: the header, one line per key (mod
// revision, version, lease, value size; tab-separated) and the trailer, and checks the whole
// of it as it goes. A failed check is returned after what was printed.
func Inspect(r io.Reader, w io.Writer, o InspectOptions) error {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	rd, err := NewReader(r)
	if err != nil {
		return err
	}
	hj, _ := json.MarshalIndent(rd.Header(), "", "  ")
	fmt.Fprintf(bw, "# header\n%s\n# KEY\tMOD_REVISION\tVERSION\tLEASE\tVALUE_BYTES", hj)
	if o.Values {
		fmt.Fprint(bw, "\tVALUE")
	}
	fmt.Fprintln(bw)
	var rec Record
	for err = rd.Next(&rec); err == nil; err = rd.Next(&rec) {
		lease := "-"
		if rec.Lease != 0 {
			lease = LeaseID(rec.Lease).String()
		}
		fmt.Fprintf(bw, "%s\t%d\t%d\t%s\t%d", strconv.Quote(string(rec.Key)), rec.ModRevision, rec.Version, lease, len(rec.Value))
		if o.Values {
			fmt.Fprintf(bw, "\t%s", strconv.Quote(string(rec.Value)))
		}
		fmt.Fprintln(bw)
	}
	if !errors.Is(err, io.EOF) {
		return err
	}
	tj, _ := json.MarshalIndent(rd.Trailer(), "", "  ")
	fmt.Fprintf(bw, "# trailer (SHA-256 checked)\n%s\n", tj)
	return nil
}

// InspectObject is Inspect of a stored object, downloaded with every check of Verify.
func InspectObject(ctx context.Context, loc snapshot.S3Location, cred snapshot.Credentials, key string, w io.Writer, o InspectOptions) error {
	if err := loc.Validate(); err != nil {
		return err
	}
	obj, err := snapshot.OpenVerified(ctx, snapshot.NewS3Client(loc, cred), loc, loc.ObjectKey(key))
	if err != nil {
		return err
	}
	defer obj.Close()
	if err := Inspect(obj, w, o); err != nil {
		var se *snapshot.Error
		if errors.As(err, &se) {
			return se
		}
		return errorf(snapshot.ExitIntegrity, "s3://%s/%s: %w", loc.Bucket, loc.ObjectKey(key), err)
	}
	return nil
}
