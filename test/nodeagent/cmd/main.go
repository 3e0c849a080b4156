// Command nodeagent runs the node agent against a cluster until interrupted:
//
//	go build -o bin/nodeagent ./test/nodeagent/cmd && sudo bin/nodeagent --kubeconfig admin.kubeconfig
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"

	"kube-dc.com/etcd-backup/test/nodeagent"
)

func main() {
	var (
		kubeconfig = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster")
		opts       nodeagent.Options
		images     imageFlag
		archives   imageFlag
	)
	flag.StringVar(&opts.NodeName, "node-name", "nodeagent", "name of the Node to register")
	flag.StringVar(&opts.StateDir, "state-dir", "", "directory for volumes and logs (default: a new temporary directory)")
	flag.StringVar(&opts.PodCIDR, "pod-cidr", "", "loopback block for pod addresses, such as 127.77.3.0/24 (default: random)")
	flag.Var(&images, "image", "image=binary, added to the default image table (repeatable)")
	flag.Var(&archives, "image-archive", "image=archive (make image), added to the default image archives (repeatable)")
	flag.Parse()
	opts.Images = nodeagent.DefaultImages()
	for k, v := range images {
		opts.Images[k] = v
	}
	opts.ImageArchives = nodeagent.DefaultImageArchives()
	for k, v := range archives {
		opts.ImageArchives[k] = v
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodeagent: failed to load kubeconfig: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	agent := nodeagent.New(cfg, opts)
	if err := agent.Start(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "nodeagent: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("node agent %s running, state and logs in %s\n", agent.NodeName(), agent.StateDir())
	<-ctx.Done()
	agent.Stop()
}

type imageFlag map[string]string

func (f *imageFlag) String() string { return fmt.Sprint(map[string]string(*f)) }

func (f *imageFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want image=path, got %q", s)
	}
	if *f == nil {
		*f = imageFlag{}
	}
	(*f)[k] = v
	return nil
}
