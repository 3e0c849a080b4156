package plugin

// TEMPORARY STUB (owned by the backups helper, who replaces this whole file).

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

type Snapshot struct {
	Key  string
	Time time.Time
}

type s3Flags struct{ Endpoint string }

func (f *s3Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Endpoint, "s3-endpoint", "", "S3 endpoint URL reachable from this machine")
}

func (o *Options) listSnapshots(ctx context.Context, c *kdcv1alpha1.KdcCluster, s3 *s3Flags) ([]Snapshot, error) {
	return nil, errors.New("not yet")
}

func newBackupsCommand(o *Options) *cobra.Command { return &cobra.Command{Use: "backups"} }
