package plugin

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// completionBudget bounds the API and S3 calls one shell completion makes.
const completionBudget = 5 * time.Second

// oneClusterArg is the Args check of the commands that take exactly one CLUSTER.
func oneClusterArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes exactly one CLUSTER (the KdcCluster's name), got %d arguments; see %s --help",
			cmd.CommandPath(), len(args), cmd.CommandPath())
	}
	return nil
}

// completeClusters completes CLUSTER arguments with the KdcClusters of the current namespace;
// multi allows several (status), else only the first argument is completed.
func (o *Options) completeClusters(multi bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if !multi && len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(completionContext(cmd), completionBudget)
		defer cancel()
		c, err := o.Client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ns, err := o.Namespace()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		list := &kdcv1alpha1.KdcClusterList{}
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []string
		for _, kc := range list.Items {
			if strings.HasPrefix(kc.Name, toComplete) && !slices.Contains(args, kc.Name) {
				names = append(names, kc.Name)
			}
		}
		slices.Sort(names)
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeSnapshotKeys completes restore's --from with the cluster's snapshot keys in S3,
// newest first.
func (o *Options) completeSnapshotKeys(s3 *s3Flags) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) != 1 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(completionContext(cmd), completionBudget)
		defer cancel()
		kc, err := o.Cluster(ctx, args[0])
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		snaps, err := o.listSnapshots(ctx, kc, s3)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var keys []string
		for _, s := range snaps {
			if strings.HasPrefix(s.Key, toComplete) {
				keys = append(keys, s.Key)
			}
		}
		return keys, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	}
}

// completionContext is the command's context, or Background when completion runs without one.
func completionContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
