package engine

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
)

const (
	// etcdDataVolume is the volumeClaimTemplate of DS-etcd that yields etcd-data-DS-etcd-0.
	etcdDataVolume = "etcd-data"
)

var (
	// unquote drops shell quotes from a word of a script.
	unquote     = strings.NewReplacer(`"`, "", "'", "")
	kubeVarRef  = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)
	shellVarRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
)

// DeriveEtcdMember reads the member configuration of pod DS-etcd-0 from the StatefulSet's etcd
// container, the way etcd itself would resolve it:
//
//  1. the container named "etcd" (or whose command is etcd, or the only container);
//  2. its environment with Kubernetes' $(VAR) expansion; fieldRef metadata.name is the pod name
//     DS-etcd-0 and metadata.namespace the StatefulSet's namespace (HOSTNAME is the pod name too,
//     as in every StatefulSet pod);
//  3. command and args after $(VAR) expansion; a shell script (sh -c "etcd ...") is split into
//     words and its $VAR / ${VAR} references expanded from the same environment;
//  4. each setting from its flag (--name, --initial-advertise-peer-urls, --initial-cluster,
//     --initial-cluster-token, --data-dir; "--f=v", "--f v" and single-dash forms), else its
//     ETCD_* variable (etcd's flag-over-environment precedence), else etcd's default;
//  5. the data directory is mapped from the etcd container's mount of the etcd-data volume to the
//     restore Job's mount of the same PVC at EtcdDataMountPath.
//
// Anything left unresolved (a variable it cannot know, such as the pod IP) is an error: the
// restore must never guess, because a wrong member identity makes etcd refuse the data.
func DeriveEtcdMember(sts *appsv1.StatefulSet) (jobspec.Member, error) {
	return deriveMember(sts, 0)
}

// DeriveEtcdMembers derives every member of DS-etcd (pods DS-etcd-0 to -<n-1>) like
// DeriveEtcdMember; they must agree on the cluster (--initial-cluster and its token), since
// every member is restored into the same cluster.
func DeriveEtcdMembers(sts *appsv1.StatefulSet, n int) ([]jobspec.Member, error) {
	members := make([]jobspec.Member, 0, n)
	for i := range n {
		m, err := deriveMember(sts, i)
		if err != nil {
			return nil, err
		}
		if i > 0 && (m.InitialCluster != members[0].InitialCluster || m.ClusterToken != members[0].ClusterToken) {
			return nil, fmt.Errorf("member %s-%d's --initial-cluster %q (token %q) differs from member %s-0's %q (token %q): the members do not form one cluster",
				sts.Name, i, m.InitialCluster, m.ClusterToken, sts.Name, members[0].InitialCluster, members[0].ClusterToken)
		}
		members = append(members, m)
	}
	return members, nil
}

// deriveMember derives member i, the pod DS-etcd-<i>.
func deriveMember(sts *appsv1.StatefulSet, i int) (jobspec.Member, error) {
	c, err := etcdContainer(sts.Spec.Template.Spec.Containers)
	if err != nil {
		return jobspec.Member{}, err
	}
	podName := fmt.Sprintf("%s-%d", sts.Name, i)
	env := map[string]string{"HOSTNAME": podName}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandKube(e.Value, env)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = podName
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = sts.Namespace
		}
	}
	var words []string
	shell := false
	for i, w := range append(append([]string{}, c.Command...), c.Args...) {
		w = expandKube(w, env)
		if i == 0 && (path.Base(w) == "sh" || path.Base(w) == "bash") {
			shell = true
		}
		if shell {
			w = shellVarRef.ReplaceAllStringFunc(w, func(m string) string {
				name := strings.Trim(m, "${}")
				if v, ok := env[name]; ok {
					return v
				}
				return m
			})
			for _, f := range strings.Fields(w) {
				words = append(words, unquote.Replace(f))
			}
			continue
		}
		words = append(words, w)
	}
	flags := parseFlags(words)
	setting := func(flag, envName, def string) string {
		if v, ok := flags[flag]; ok {
			return v
		}
		if v, ok := env[envName]; ok {
			return v
		}
		return def
	}
	m := jobspec.Member{
		Name:         setting("name", "ETCD_NAME", jobspec.DefaultMemberName),
		ClusterToken: setting("initial-cluster-token", "ETCD_INITIAL_CLUSTER_TOKEN", jobspec.DefaultClusterToken),
	}
	for _, u := range strings.Split(setting("initial-advertise-peer-urls", "ETCD_INITIAL_ADVERTISE_PEER_URLS", jobspec.DefaultPeerURL), ",") {
		if u = strings.TrimSpace(u); u != "" {
			m.PeerURLs = append(m.PeerURLs, u)
		}
	}
	var defCluster []string
	for _, u := range m.PeerURLs {
		defCluster = append(defCluster, m.Name+"="+u)
	}
	m.InitialCluster = setting("initial-cluster", "ETCD_INITIAL_CLUSTER", strings.Join(defCluster, ","))
	dataDir := setting("data-dir", "ETCD_DATA_DIR", m.Name+jobspec.DataDirSuffix)
	if m.DataDir, err = mapDataDir(c, dataDir); err != nil {
		return jobspec.Member{}, err
	}
	for what, v := range map[string]string{"name": m.Name, "initial-cluster": m.InitialCluster,
		"initial-cluster-token": m.ClusterToken, "initial-advertise-peer-urls": strings.Join(m.PeerURLs, ","), "data-dir": dataDir} {
		if v == "" || strings.Contains(v, "$") {
			return jobspec.Member{}, fmt.Errorf("etcd --%s of container %q is %q: cannot resolve it for pod %s", what, c.Name, v, podName)
		}
	}
	return m, nil
}

func etcdContainer(cs []corev1.Container) (*corev1.Container, error) {
	for i := range cs {
		if cs[i].Name == "etcd" {
			return &cs[i], nil
		}
	}
	for i := range cs {
		if len(cs[i].Command) > 0 && path.Base(cs[i].Command[0]) == "etcd" {
			return &cs[i], nil
		}
	}
	if len(cs) == 1 {
		return &cs[0], nil
	}
	return nil, errors.New("no container named etcd or running etcd")
}

// expandKube expands $(VAR) references the way the kubelet does; unknown ones stay.
func expandKube(s string, env map[string]string) string {
	return kubeVarRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// parseFlags reads etcd-style flags ("--f=v", "--f v", "-f=v", "-f v"); the last wins.
func parseFlags(words []string) map[string]string {
	flags := map[string]string{}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") {
			continue
		}
		name := strings.TrimLeft(w, "-")
		if k, v, ok := strings.Cut(name, "="); ok {
			flags[k] = v
			continue
		}
		if i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") {
			flags[name] = words[i+1]
			i++
			continue
		}
		flags[name] = "true"
	}
	return flags
}

// mapDataDir maps etcd's data directory from the etcd container's mount of the etcd-data
// volume to the restore Job's mount at EtcdDataMountPath.
func mapDataDir(c *corev1.Container, dataDir string) (string, error) {
	if !path.IsAbs(dataDir) {
		wd := c.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dataDir = path.Join(wd, dataDir)
	}
	for _, vm := range c.VolumeMounts {
		if vm.Name != etcdDataVolume {
			continue
		}
		rel := strings.TrimPrefix(path.Clean(dataDir), path.Clean(vm.MountPath))
		if rel == path.Clean(dataDir) || rel == "" || !strings.HasPrefix(rel, "/") {
			return "", fmt.Errorf("etcd data directory %s is not a directory inside the %s volume mounted at %s", dataDir, etcdDataVolume, vm.MountPath)
		}
		return path.Join(kdcv1alpha1.EtcdDataMountPath, rel), nil
	}
	return "", fmt.Errorf("container %q does not mount the %s volume", c.Name, etcdDataVolume)
}
