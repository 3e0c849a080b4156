package nodeagent

import (
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
)

// ServiceCIDR returns a random loopback block for kube-apiserver's --service-cluster-ip-range
// (127.128.0.0/10, apart from the pod blocks). With Service ClusterIPs on loopback the agent
// proxies each ClusterIP:port to a ready pod's address and target port, like kube-proxy, so
// Services with a targetPort other than their port work, from pods and from kube-apiserver
// itself (webhooks, aggregated APIs): Endpoints and EndpointSlices cannot hold the pods'
// loopback addresses, so kube-apiserver's endpoint routing cannot be used instead.
func ServiceCIDR() string {
	return fmt.Sprintf("127.%d.0.0/16", 128+rand.IntN(64))
}

// proxier listens on the loopback ClusterIP and ports of every Service with a selector.
type proxier struct {
	a         *Agent
	mu        sync.Mutex
	listeners map[string]*proxyListener // ip:port/namespace/name
	closed    bool
}

type proxyListener struct {
	l         net.Listener
	namespace string
	name      string
	port      corev1.ServicePort
}

func (p *proxier) sync() {
	services, err := p.a.services.List(everything)
	if err != nil {
		return
	}
	want := map[string]*proxyListener{}
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
			want[addr+"/"+svc.Namespace+"/"+svc.Name] = &proxyListener{namespace: svc.Namespace, name: svc.Name, port: port}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	for key, l := range p.listeners {
		if w, ok := want[key]; !ok || w.port != l.port {
			l.l.Close()
			delete(p.listeners, key)
		}
	}
	for key, pl := range want {
		if _, ok := p.listeners[key]; ok {
			continue
		}
		addr := key[:len(key)-len(pl.namespace)-len(pl.name)-2]
		l, err := net.Listen("tcp", addr)
		if err != nil {
			p.a.log.Error(err, "Failed to proxy Service", "service", pl.namespace+"/"+pl.name, "address", addr)
			continue
		}
		pl.l = l
		p.listeners[key] = pl
		go p.serve(pl)
	}
}

func (p *proxier) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for key, l := range p.listeners {
		l.l.Close()
		delete(p.listeners, key)
	}
}

func (p *proxier) serve(pl *proxyListener) {
	for {
		conn, err := pl.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go p.forward(pl, conn)
	}
}

// backends are the ready pods' address:targetPort of the Service, shuffled.
func (p *proxier) backends(pl *proxyListener) []string {
	svc, err := p.a.services.Services(pl.namespace).Get(pl.name)
	if err != nil {
		return nil
	}
	pods, err := p.a.pods.Pods(pl.namespace).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return nil
	}
	var out []string
	for _, pod := range pods {
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil || (!podReady(pod) && !svc.Spec.PublishNotReadyAddresses) {
			continue
		}
		port := int(pl.port.Port)
		switch tp := pl.port.TargetPort; {
		case tp.Type == intstr.Int && tp.IntVal != 0:
			port = int(tp.IntVal)
		case tp.Type == intstr.String && tp.StrVal != "":
			port = 0
			for _, c := range pod.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == tp.StrVal {
						port = int(cp.ContainerPort)
					}
				}
			}
		}
		if port != 0 {
			out = append(out, net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)))
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func (p *proxier) forward(pl *proxyListener, in net.Conn) {
	defer in.Close()
	var out net.Conn
	for _, b := range p.backends(pl) {
		c, err := net.DialTimeout("tcp", b, 5*time.Second)
		if err == nil {
			out = c
			break
		}
	}
	if out == nil {
		return // no ready backend: the client sees the connection closed
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
}
