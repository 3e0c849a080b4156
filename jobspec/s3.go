package jobspec

import (
	"flag"
	"net/url"
	"strings"
)

// DefaultRegion is the signing region when none is given.
const DefaultRegion = "us-east-1"

// S3Location is where snapshots live: the endpoint, the bucket and the optional key prefix from
// destinationPath s3://bucket/prefix.
type S3Location struct {
	// Endpoint is the S3 endpoint URL; path-style addressing is always used.
	Endpoint string `json:"endpoint"`
	// Bucket is the bucket name.
	Bucket string `json:"bucket"`
	// Prefix is the key prefix without leading or trailing slashes; may be empty.
	Prefix string `json:"prefix,omitempty"`
	// Region is the signing region; the subcommands use DefaultRegion when it is empty.
	Region string `json:"region,omitempty"`
}

// Args are the S3 flags of the location; an empty prefix or region is left out.
func (l S3Location) Args() []string {
	args := []string{"--s3-endpoint=" + l.Endpoint, "--bucket=" + l.Bucket}
	if l.Prefix != "" {
		args = append(args, "--prefix="+l.Prefix)
	}
	if l.Region != "" {
		args = append(args, "--region="+l.Region)
	}
	return args
}

// Bind registers the S3 flags on fs.
func (l *S3Location) Bind(fs *flag.FlagSet) {
	fs.StringVar(&l.Endpoint, "s3-endpoint", "", "S3 endpoint URL (path-style addressing)")
	fs.StringVar(&l.Bucket, "bucket", "", "bucket of the snapshots")
	fs.StringVar(&l.Prefix, "prefix", "", "key prefix from destinationPath s3://bucket/prefix")
	fs.StringVar(&l.Region, "region", DefaultRegion, "S3 signing region")
}

// ObjectKey is the object key of snapshot key (C/C-<ts>.db): prefix + "/" + key, or key itself
// without a prefix.
func (l S3Location) ObjectKey(key string) string {
	p := strings.Trim(l.Prefix, "/")
	if p == "" {
		return key
	}
	return p + "/" + key
}

// DestinationPath is s3://bucket[/prefix].
func (l S3Location) DestinationPath() string {
	if l.Prefix == "" {
		return "s3://" + l.Bucket
	}
	return "s3://" + l.Bucket + "/" + l.Prefix
}

// Validate checks the location is usable; its errors are ExitUsage.
func (l S3Location) Validate() error {
	if l.Endpoint == "" {
		return Errorf(ExitUsage, "--s3-endpoint is required")
	}
	u, err := url.Parse(l.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Errorf(ExitUsage, "--s3-endpoint %q is not an http(s) URL", l.Endpoint)
	}
	if l.Bucket == "" {
		return Errorf(ExitUsage, "--bucket is required")
	}
	return nil
}
