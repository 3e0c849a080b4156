// Package nodeagent is test infrastructure, never part of the product: a kubelet stand-in that
// runs the pods of one Node as local processes, so that the real StatefulSet, Deployment, Job
// and CronJob controllers of a real kube-controller-manager drive real etcd, kube-apiserver and
// kdc-etcd-backup processes on one machine.
//
// # Using it
//
//	env, _ := framework.Start(framework.Options{APIServerFlags: map[string]string{
//		"service-cluster-ip-range": nodeagent.ServiceCIDR(), // Services on loopback, proxied by the agent
//	}})
//	cm, _ := env.StartControllerManager()
//	agent := nodeagent.New(env.Config, nodeagent.Options{})
//	if err := agent.Start(ctx); err != nil { ... } // registers the Node, returns when running
//	defer agent.Stop()                              // stops every process it started
//
// test/nodeagent/cmd runs the same against any kubeconfig.
//
// # What it does
//
//   - Node: registers a Ready Node (Options.NodeName, default "nodeagent") with allocatable
//     resources and keeps its status fresh. There is no kube-scheduler: the agent binds every
//     unscheduled pod of the default scheduler to its node (pods/binding).
//   - Images: the product's image runs from its image archive (Options.ImageArchives, default
//     DefaultImageArchives: bin/kdc-etcd-backup-image.tar, `make image`), as a container runtime
//     would run it: the archive's layers are unpacked once into a root filesystem under
//     StateDir/images, the container is chrooted into it with /proc and the basic /dev nodes, and
//     runs the config's entrypoint and cmd (command and args replace them as in Kubernetes), its
//     environment (the container's env wins) and working directory, and its user unless the pod
//     names one. Every other image maps to a local binary, the image's entrypoint, by the table
//     Options.Images (default DefaultImages: etcd [v3.5 by default, "etcd:3.6" and "etcd:3.7"
//     tags], kube-apiserver, kubectl, minio from bin/). The process runs the binary with
//     command[1:] and args; a command naming another file beside the binary (etcdctl, etcdutl in
//     the etcd image) or a program of this machine (/bin/sh) runs that instead.
//     $(VAR) references are expanded; env comes from value, Secret, ConfigMap, envFrom and the
//     downward API (status.podIP, metadata.name, ...); KUBERNETES_SERVICE_HOST/PORT point at the
//     agent's API server.
//   - Addresses: each pod gets its own loopback address from Options.PodCIDR (default a random
//     127.x.y.0/24; .1 is the node's hostIP), reported as status.podIP(s). A pod gets its previous
//     address back when it is recreated with the same name (StatefulSet pods).
//   - Containers: each process starts as a re-exec of the agent's own binary (the package's
//     init function recognises it) in its own mount and UTS namespace. That "container init"
//     bind-mounts every volume at the container's mountPath (subPath, readOnly honoured), a
//     per-pod /etc/hosts at /etc/hosts and a per-container termination message file at
//     terminationMessagePath, sets the hostname, chdirs to workingDir, switches to
//     securityContext runAsUser/runAsGroup/fsGroup, and execs the binary, keeping its PID. So
//     manifests need no rewritten paths or flags. This needs root; Start says so clearly
//     otherwise.
//   - Volumes, materialised under StateDir/pods/<ns>_<pod>_<uid>/volumes once at pod start:
//     Secret, ConfigMap (kube-root-ca.crt falls back to the agent's CA), downwardAPI, projected
//     (including serviceAccountToken via TokenRequest), emptyDir, hostPath. A
//     PersistentVolumeClaim is bound to a hostPath PersistentVolume "pvc-<claim uid>" whose data
//     lives in StateDir/pv/<volume> for as long as the claim exists, so data survives pod
//     restarts and is shared by every pod using the claim (etcd's StatefulSet and the restore
//     Job). Deleting an unused claim deletes its volume and data. When no admission plugin
//     projected a service account token (envtest disables it), the agent mounts one at
//     /var/run/secrets/kubernetes.io/serviceaccount if the ServiceAccount exists. Volumes of a
//     pod running as a non-root user are chowned to it (claims recursively), with fsGroup group
//     permissions.
//   - Services: when kube-apiserver's --service-cluster-ip-range is a loopback block
//     (ServiceCIDR), the agent is also kube-proxy: it listens on every ClusterIP:port of a
//     Service with a selector and forwards each TCP connection to a ready pod's address and
//     target port (named ports too). That is how kube-apiserver reaches webhook Services:
//     Endpoints and EndpointSlices reject loopback addresses, so --enable-aggregator-routing
//     cannot work here. With the default (non-loopback) range, Service names resolve to one
//     ready pod's address instead and clients must use the target port.
//   - /etc/hosts: resolves localhost, the pod's own hostname(.subdomain...), "kubernetes.default"
//     to the API server, each Service (svc, svc.ns, svc.ns.svc, svc.ns.svc.cluster.local) to its
//     ClusterIP (or, see above, one ready pod) or, headless, to all its ready pods, and
//     pod.subdomain names of StatefulSet pods. It is rewritten in place as pods and Services
//     change. /etc/resolv.conf names 127.0.0.1 (no server): a name not in /etc/hosts fails at
//     once and no lookup leaves loopback.
//   - Status: phase Pending/Running/Succeeded/Failed as the kubelet computes it, conditions
//     PodScheduled, PodReadyToStartContainers, Initialized, ContainersReady, Ready, container
//     statuses with ready, started, restartCount, state and lastState (exit code, reason,
//     termination message, FallbackToLogsOnError). Readiness probes: tcpSocket, httpGet, exec (run
//     like the container); delays capped by Options.MaxProbePeriod. Without a probe a running
//     container is ready. Liveness and startup probes are ignored. Status is written on the
//     latest object with retries on conflict, by the pod's own worker only.
//   - Lifecycle: init containers run first, in order. restartPolicy Always/OnFailure restart
//     with exponential backoff (Options.RestartBackoff..MaxRestartBackoff), Never does not. On
//     deletion the agent sends SIGTERM to the PIDs it started, SIGKILL to their process groups
//     after the grace period (at least 2 s, the kubelet's floor; a second deletion with a
//     shorter one restarts the wait with it), reports the terminal phase and deletes the pod
//     with grace 0. A pod that vanishes has its processes stopped; Stop stops every process the
//     agent started.
//   - Logs: stdout and stderr of each container go to StateDir/pods/<ns>_<pod>_<uid>/logs/<container>.log
//     (restarts appended; Agent.LogPath; the path is logged when the container first starts).
//     StateDir is kept after Stop.
//
// Mount points that do not exist on this machine (a mountPath such as /var/run/etcd) are
// created as empty directories or files on the host before being mounted over inside the
// container's namespace; nothing is mounted on the host itself.
//
// Not done: kubectl logs/exec (no kubelet API; read the log files), live updates of
// Secret/ConfigMap volumes after the pod started, token refresh, resource limits, liveness and
// startup probes, lifecycle hooks, ephemeral and sidecar containers, UDP Services, more than one
// agent per API server.
package nodeagent
