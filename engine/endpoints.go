package engine

import (
	"fmt"
	"net"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
)

// etcdClientPort is etcd's client port when the StatefulSet names none.
const etcdClientPort int32 = 2379

// EtcdEndpoints are the client URLs of the members of the etcd StatefulSet DS-etcd: one
// per ordinal, through the StatefulSet's governing Service,
// https://DS-etcd-<i>.<serviceName>.<ns>.svc:<client port>. A StatefulSet scaled to 0 (during a
// restore) still yields member 0, so the CronJob does not change under a running restore.
// Without spec.serviceName it falls back to the client Service DS-etcd-client (docs/backup.md).
func EtcdEndpoints(sts *appsv1.StatefulSet) []string {
	port := etcdClientPort
	for _, ctr := range sts.Spec.Template.Spec.Containers {
		for _, p := range ctr.Ports {
			if p.Name == "client" && p.ContainerPort > 0 {
				port = p.ContainerPort
			}
		}
	}
	portStr := strconv.Itoa(int(port))
	if sts.Spec.ServiceName == "" {
		return []string{"https://" + net.JoinHostPort(sts.Name+"-client."+sts.Namespace+".svc", portStr)}
	}
	replicas := int32(1)
	if sts.Spec.Replicas != nil && *sts.Spec.Replicas > 1 {
		replicas = *sts.Spec.Replicas
	}
	out := make([]string, 0, replicas)
	for i := range replicas {
		host := fmt.Sprintf("%s-%d.%s.%s.svc", sts.Name, i, sts.Spec.ServiceName, sts.Namespace)
		out = append(out, "https://"+net.JoinHostPort(host, portStr))
	}
	return out
}
