package env

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// serviceProxy stands in for kube-proxy on loopback: for every Service with a ClusterIP (the
// management API server allocates them from a 127.x range) and a selector, it listens on
// ClusterIP:port and forwards each TCP connection to a ready pod of the Service at its target
// port. kube-apiserver's default service resolver then reaches the webhook at the Service's
// ClusterIP, and TLS stays end to end (the certificate is verified for the Service's DNS name).
//
// Endpoints and EndpointSlices cannot be used: their validation rejects loopback addresses
// ("may not be in the loopback range"), so the endpoint controllers cannot publish the pods'
// 127.x addresses and --enable-aggregator-routing has nothing to route to.
type serviceProxy struct {
	pods     corelisters.PodLister
	services corelisters.ServiceLister
	factory  informers.SharedInformerFactory
	kick     chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu        sync.Mutex
	listeners map[string]net.Listener // "ip:port" -> listener
}

// randomServiceCIDR is a /16 in 127.200.0.0-127.250.255.255, outside the node agent's pod range
// (127.64.0.0/10), so that environments of parallel test binaries rarely collide.
func randomServiceCIDR() string {
	return fmt.Sprintf("127.%d.0.0/16", 200+rand.IntN(51))
}

func startServiceProxy(ctx context.Context, kube kubernetes.Interface) (*serviceProxy, error) {
	ctx, cancel := context.WithCancel(ctx)
	p := &serviceProxy{kick: make(chan struct{}, 1), cancel: cancel, listeners: map[string]net.Listener{}}
	p.factory = informers.NewSharedInformerFactory(kube, 0)
	svcInf := p.factory.Core().V1().Services()
	podInf := p.factory.Core().V1().Pods()
	p.services, p.pods = svcInf.Lister(), podInf.Lister()
	kick := func(any) {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick, UpdateFunc: func(_, o any) { kick(o) }, DeleteFunc: kick,
	}); err != nil {
		cancel()
		return nil, err
	}
	_ = podInf.Informer()
	p.factory.Start(ctx.Done())
	for typ, ok := range p.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			return nil, fmt.Errorf("failed to sync the %v informer", typ)
		}
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			p.sync(ctx)
			select {
			case <-ctx.Done():
				return
			case <-p.kick:
			}
		}
	}()
	return p, nil
}

// sync opens a listener for every Service port that has none and closes those of Services gone.
func (p *serviceProxy) sync(ctx context.Context) {
	services, _ := p.services.List(labels.Everything())
	want := map[string]bool{}
	for _, svc := range services {
		ip := net.ParseIP(svc.Spec.ClusterIP)
		if ip == nil || !ip.IsLoopback() || len(svc.Spec.Selector) == 0 {
			continue
		}
		for _, port := range svc.Spec.Ports {
			if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
				continue
			}
			addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(port.Port)))
			want[addr] = true
			p.mu.Lock()
			_, ok := p.listeners[addr]
			p.mu.Unlock()
			if ok {
				continue
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				continue // retried on the next Service event
			}
			p.mu.Lock()
			p.listeners[addr] = l
			p.mu.Unlock()
			p.wg.Add(1)
			go p.serve(ctx, l, svc.Namespace, svc.Name, port.Port)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, l := range p.listeners {
		if !want[addr] {
			l.Close()
			delete(p.listeners, addr)
		}
	}
}

func (p *serviceProxy) serve(ctx context.Context, l net.Listener, ns, name string, port int32) {
	defer p.wg.Done()
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer conn.Close()
			backend, err := p.backend(ns, name, port)
			if err != nil {
				return
			}
			up, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", backend)
			if err != nil {
				return
			}
			defer up.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close(); up.Close() })
			defer stop()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, conn); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			go func() { _, _ = io.Copy(conn, up); conn.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

// backend picks a ready pod of the Service, at random, and returns its address at the port's
// target port.
func (p *serviceProxy) backend(ns, name string, port int32) (string, error) {
	svc, err := p.services.Services(ns).Get(name)
	if err != nil {
		return "", err
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return "", errors.New("port gone")
	}
	pods, err := p.pods.Pods(ns).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return "", err
	}
	var ready []string
	for _, pod := range pods {
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil || !podReady(pod) {
			continue
		}
		if target, ok := targetPort(pod, sp.TargetPort, sp.Port); ok {
			ready = append(ready, net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(target)))
		}
	}
	if len(ready) == 0 {
		return "", fmt.Errorf("service %s/%s has no ready pod", ns, name)
	}
	return ready[rand.IntN(len(ready))], nil
}

func targetPort(pod *corev1.Pod, target intstr.IntOrString, port int32) (int, bool) {
	switch {
	case target.Type == intstr.Int && target.IntVal != 0:
		return int(target.IntVal), true
	case target.Type == intstr.String && target.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == target.StrVal {
					return int(cp.ContainerPort), true
				}
			}
		}
		return 0, false
	}
	return int(port), true
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Stop closes every listener and connection and waits for them.
func (p *serviceProxy) Stop() error {
	p.cancel()
	p.mu.Lock()
	for addr, l := range p.listeners {
		l.Close()
		delete(p.listeners, addr)
	}
	p.mu.Unlock()
	p.factory.Shutdown()
	p.wg.Wait()
	return nil
}
