package nodeagent

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

var everything = labels.Everything()

func (a *Agent) kickHosts() {
	select {
	case a.hostsKick <- struct{}{}:
	default:
	}
}

// hostsLoop rewrites every running pod's /etc/hosts when pods or Services change, at most
// ten times a second.
func (a *Agent) hostsLoop() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.hostsKick:
		}
		a.mu.Lock()
		workers := make([]*podWorker, 0, len(a.workers))
		for _, w := range a.workers {
			workers = append(workers, w)
		}
		a.mu.Unlock()
		for _, w := range workers {
			if err := a.writeHosts(w); err != nil && a.ctx.Err() == nil {
				a.log.Error(err, "Failed to write hosts file", "pod", w.key)
			}
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeHosts writes w's hosts file in place (the same inode stays bind-mounted in the
// container) when its content changed.
func (a *Agent) writeHosts(w *podWorker) error {
	a.hostsMu.Lock()
	defer a.hostsMu.Unlock()
	a.mu.Lock()
	ip, hostname := w.ip, w.hostname
	a.mu.Unlock()
	if ip == "" {
		return nil
	}
	pod := w.current()
	if pod == nil {
		return nil
	}
	content := a.hostsFor(pod, ip, hostname)
	path := filepath.Join(w.dir, "hosts")
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
		return nil
	}
	return os.WriteFile(path, content, 0o644)
}

// hostsFor is the /etc/hosts of pod: localhost, the pod's own names, every Service by its
// DNS names (a headless Service resolves to its ready pods, any other Service to one ready pod
// as there is no kube-proxy), and every StatefulSet-style pod hostname.subdomain.
func (a *Agent) hostsFor(pod *corev1.Pod, ip, hostname string) []byte {
	var b bytes.Buffer
	domain := a.opts.ClusterDomain
	names := func(name, ns string) []string { // name as seen from pod's namespace
		n := []string{name + "." + ns + ".svc." + domain, name + "." + ns + ".svc", name + "." + ns}
		if ns == pod.Namespace {
			n = append(n, name)
		}
		return n
	}
	fmt.Fprintf(&b, "# Kubernetes-managed hosts file (node agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	own := []string{}
	if pod.Spec.Subdomain != "" {
		own = append(own, names(hostname+"."+pod.Spec.Subdomain, pod.Namespace)...)
	}
	fmt.Fprintf(&b, "%s\t%s\n", ip, strings.Join(append(own, hostname), " "))
	if host, _, ok := apiServerHostPort(a.cfg.Host); ok && net.ParseIP(host) != nil {
		fmt.Fprintf(&b, "%s\t%s\n", host, strings.Join(names("kubernetes", "default"), " "))
	}
	pods, _ := a.pods.List(everything)
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	services, _ := a.services.List(everything)
	sort.Slice(services, func(i, j int) bool {
		if services[i].Namespace != services[j].Namespace {
			return services[i].Namespace < services[j].Namespace
		}
		return services[i].Name < services[j].Name
	})
	for _, svc := range services {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		if ip := net.ParseIP(svc.Spec.ClusterIP); ip != nil && ip.IsLoopback() {
			// The agent proxies it (ServiceCIDR).
			fmt.Fprintf(&b, "%s\t%s\n", svc.Spec.ClusterIP, strings.Join(names(svc.Name, svc.Namespace), " "))
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
		for _, p := range pods {
			if p.Namespace != svc.Namespace || p.Status.PodIP == "" || p.DeletionTimestamp != nil || !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			if !podReady(p) && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			fmt.Fprintf(&b, "%s\t%s\n", p.Status.PodIP, strings.Join(names(svc.Name, svc.Namespace), " "))
			if !headless {
				break
			}
		}
	}
	for _, p := range pods {
		if p.Spec.Subdomain == "" || p.Status.PodIP == "" || p.UID == pod.UID || p.DeletionTimestamp != nil {
			continue
		}
		h := p.Name
		if p.Spec.Hostname != "" {
			h = p.Spec.Hostname
		}
		fmt.Fprintf(&b, "%s\t%s\n", p.Status.PodIP, strings.Join(names(h+"."+p.Spec.Subdomain, p.Namespace), " "))
	}
	return b.Bytes()
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
