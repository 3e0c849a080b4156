package plugin

// TEMPORARY STUB (owned by the manual-restore helper, who replaces this whole file).

import (
	"context"
	"errors"

	"github.com/spf13/pflag"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

type manualFlags struct{}

func (f *manualFlags) AddFlags(fs *pflag.FlagSet) {}

func (o *Options) manualRestore(ctx context.Context, c *kdcv1alpha1.KdcCluster, key string, f *manualFlags) error {
	return errors.New("not yet")
}
