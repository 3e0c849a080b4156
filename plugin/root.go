// Package plugin is kubectl-kdc, the kubectl plugin of kdc-etcd-backup (`kubectl kdc ...`):
// list a cluster's snapshots, back up now, restore with live progress, the backup health of every
// cluster, and the manual restore for when the manager is down.
//
// It follows kubectl plugin conventions: the kubeconfig, context and namespace come from the
// standard client-go loading rules and flags (k8s.io/cli-runtime), errors are printed as
// `error: ...` and exit 1. Every command reads and writes the same objects as the controller;
// nothing here keeps state of its own.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/version"
)

// scheme holds the types the plugin reads and writes.
var scheme = runtime.NewScheme()

func init() {
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, kdcv1alpha1.AddToScheme, obcv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
}

// Options are shared by every subcommand: the kubeconfig flags, the streams, and the clients
// built from them on first use.
type Options struct {
	// ConfigFlags are kubectl's --kubeconfig, --context, --namespace, ... flags.
	ConfigFlags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
	// Clock is the time source of elapsed times and ages; the real clock unless a test sets it.
	Clock clock.PassiveClock

	client    client.WithWatch
	namespace string
}

// NewOptions returns Options with kubectl's config flags and the given streams.
func NewOptions(streams genericiooptions.IOStreams) *Options {
	return &Options{
		ConfigFlags: genericclioptions.NewConfigFlags(true),
		IOStreams:   streams,
		Clock:       clock.RealClock{},
	}
}

// NewCommand returns the `kubectl kdc` command with every subcommand.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := NewOptions(streams)
	cmd := &cobra.Command{
		Use:   "kubectl-kdc",
		Short: "Back up and restore the etcd of Kube-DC tenant clusters",
		Long: `kubectl kdc works with the etcd backups and restores of KdcClusters, through the same objects the
kdc-etcd-backup controller and webhook use.`,
		Example: `  # Which clusters have a failing or stale backup?
  kubectl kdc status -A

  # List the snapshots of cluster tenant-a, newest first
  kubectl kdc backups tenant-a -n team-a

  # Take a snapshot now and wait for it
  kubectl kdc backup tenant-a -n team-a --wait

  # Restore the newest snapshot and follow the restore live
  kubectl kdc restore tenant-a -n team-a --latest --wait`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl kdc",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	o.ConfigFlags.AddFlags(cmd.PersistentFlags())
	status := newStatusCommand(o)
	status.ValidArgsFunction = o.completeClusters(true)
	cmd.AddCommand(status)
	for _, sub := range []*cobra.Command{newBackupsCommand(o), newBackupCommand(o), newRestoreCommand(o)} {
		sub.ValidArgsFunction = o.completeClusters(false)
		cmd.AddCommand(sub)
	}
	return cmd
}

// Execute runs the command with args and returns the process exit code: 0, or 1 after printing
// `error: ...` (kubectl's convention).
func Execute(ctx context.Context, streams genericiooptions.IOStreams, args []string) int {
	cmd := NewCommand(streams)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(streams.ErrOut, errorMessage(err))
		return 1
	}
	return 0
}

// errorMessage formats err as kubectl does: an Invalid answer of the API server (the webhook's
// rejection) as `The <Kind> "<name>" is invalid: <field>: <message>`, one cause per line when
// there are several; anything else as `error: <err>`.
func errorMessage(err error) string {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || !apierrors.IsInvalid(err) {
		return "error: " + err.Error()
	}
	d := status.Status().Details
	if d == nil || len(d.Causes) == 0 {
		return "error: " + err.Error()
	}
	causes := make([]string, 0, len(d.Causes))
	for _, c := range d.Causes {
		causes = append(causes, fmt.Sprintf("%s: %s", c.Field, c.Message))
	}
	head := fmt.Sprintf("The %s %q is invalid: ", d.Kind, d.Name)
	if len(causes) == 1 {
		return head + causes[0]
	}
	return head + "\n* " + strings.Join(causes, "\n* ")
}

// Client returns the controller-runtime client of the configured cluster, built on first use.
func (o *Options) Client() (client.WithWatch, error) {
	if o.client != nil {
		return o.client, nil
	}
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("failed to load the kubeconfig: %w", err)
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("failed to create a client for %s: %w", cfg.Host, err)
	}
	o.client = c
	return c, nil
}

// Namespace is --namespace, else the kubeconfig context's namespace, else "default".
func (o *Options) Namespace() (string, error) {
	if o.namespace != "" {
		return o.namespace, nil
	}
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("failed to read the namespace from the kubeconfig: %w", err)
	}
	o.namespace = ns
	return ns, nil
}

// Cluster gets the KdcCluster name in the current namespace, with an error that says what to
// check when it does not exist.
func (o *Options) Cluster(ctx context.Context, name string) (*kdcv1alpha1.KdcCluster, error) {
	c, err := o.Client()
	if err != nil {
		return nil, err
	}
	ns, err := o.Namespace()
	if err != nil {
		return nil, err
	}
	kc := &kdcv1alpha1.KdcCluster{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, kc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("KdcCluster %q not found in namespace %q; list them with: kubectl get kdc-cl -A", name, ns)
		}
		return nil, fmt.Errorf("failed to get KdcCluster %s/%s: %w", ns, name, err)
	}
	return kc, nil
}

// now is the plugin's clock.
func (o *Options) now() time.Time { return o.Clock.Now() }
