package nodeagent

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeLoop runs c's readiness probe against process p until ctx ends, reporting each result
// to the worker. Delays are capped by Options.MaxProbePeriod.
func (w *podWorker) probeLoop(ctx context.Context, pod *corev1.Pod, c *container, p *process) {
	pr := c.spec.ReadinessProbe
	capped := func(sec int32, def time.Duration) time.Duration {
		d := def
		if sec > 0 {
			d = time.Duration(sec) * time.Second
		}
		return min(d, w.a.opts.MaxProbePeriod)
	}
	delay, period := capped(pr.InitialDelaySeconds, 0), capped(pr.PeriodSeconds, 10*time.Second)
	timeout := time.Second
	if pr.TimeoutSeconds > 0 {
		timeout = time.Duration(pr.TimeoutSeconds) * time.Second
	}
	success, failure := max(pr.SuccessThreshold, 1), max(pr.FailureThreshold, 1)
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := w.probe(ctx, pod, c, pr, timeout)
		if ctx.Err() != nil {
			return
		}
		w.send(func() {
			if c.proc != p {
				return
			}
			if err == nil {
				c.probeOK, c.probeFails = c.probeOK+1, 0
				if c.probeOK >= success && !c.ready {
					c.ready = true
					w.log.Info("Container is ready", "container", c.spec.Name)
				}
			} else {
				c.probeOK, c.probeFails = 0, c.probeFails+1
				if c.probeFails >= failure && c.ready {
					c.ready = false
					w.log.Info("Container is not ready", "container", c.spec.Name, "reason", err.Error())
				}
			}
		})
		t.Reset(period)
	}
}

func (w *podWorker) probe(ctx context.Context, pod *corev1.Pod, c *container, pr *corev1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case pr.TCPSocket != nil:
		host := w.ip
		if pr.TCPSocket.Host != "" {
			host = pr.TCPSocket.Host
		}
		port, err := probePort(&c.spec, pr.TCPSocket.Port)
		if err != nil {
			return err
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case pr.HTTPGet != nil:
		g := pr.HTTPGet
		host := w.ip
		if g.Host != "" {
			host = g.Host
		}
		port, err := probePort(&c.spec, g.Port)
		if err != nil {
			return err
		}
		scheme := "http"
		if g.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), g.Path), nil)
		if err != nil {
			return err
		}
		for _, h := range g.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // kubelet probes skip verification too
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe returned %d", resp.StatusCode)
		}
		return nil
	case pr.Exec != nil:
		// The command runs like the container: a new mount namespace with the same mounts.
		if c.launch == nil {
			return fmt.Errorf("container not started")
		}
		spec := *c.launch
		run, err := w.a.resolveRun(c.spec.Image, pr.Exec.Command, nil)
		if err != nil {
			return err
		}
		spec.Argv = run.argv
		var out bytes.Buffer
		p, err := startProcess(w.a.self, filepath.Join(w.dir, "specs", c.spec.Name+"-probe.json"), &spec, &out)
		if err != nil {
			return err
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			p.stop(0)
			return fmt.Errorf("exec probe timed out after %s", timeout)
		}
		if p.code != 0 {
			return fmt.Errorf("exec probe exited with %d: %s", p.code, bytes.TrimSpace(out.Bytes()))
		}
		return nil
	}
	return nil // gRPC probes: treat as passing
}

func probePort(c *corev1.Container, port intstr.IntOrString) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no container port named %q", port.StrVal)
}
