package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// saVolume is the volume the agent adds when no admission plugin projected a token.
	saVolume = "kube-api-access-nodeagent"
	// pvFinalizer and pvcFinalizer are the protection finalizers the agent lifts on deletion,
	// standing in for the pvc-protection and pv-protection controllers.
	pvcFinalizer = "kubernetes.io/pvc-protection"
	pvFinalizer  = "kubernetes.io/pv-protection"
)

// resolvConf points resolvers at a loopback port nothing serves, so every lookup of a name not in
// /etc/hosts is refused at once (test/nodeagent/doc.go, "/etc/hosts").
const resolvConf = "# Node agent: names resolve from /etc/hosts only.\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"

// setup prepares the pod's sandbox: address, volumes and /etc/hosts. It is retried until it
// succeeds (a Secret not created yet, a claim not bound yet).
func (w *podWorker) setup(ctx context.Context, pod *corev1.Pod) error {
	if w.ip == "" {
		ip := w.a.hostIP
		if !pod.Spec.HostNetwork {
			var err error
			if ip, err = w.a.ipam.allocate(w.key); err != nil {
				return err
			}
		}
		hostname := pod.Name
		if pod.Spec.Hostname != "" {
			hostname = pod.Spec.Hostname
		}
		w.a.mu.Lock() // the hosts loop reads them
		w.ip, w.hostname = ip, hostname
		w.a.mu.Unlock()
	}
	for _, d := range []string{"volumes", "termination", "specs", "logs"} {
		if err := os.MkdirAll(filepath.Join(w.dir, d), 0o755); err != nil {
			return err
		}
	}
	vols := map[string]string{}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		p, err := w.volume(ctx, pod, v)
		if err != nil {
			return fmt.Errorf("failed to prepare volume %q: %w", v.Name, err)
		}
		vols[v.Name] = p
	}
	if p, err := w.serviceAccountVolume(ctx, pod); err != nil {
		return err
	} else if p != "" {
		vols[saVolume] = p
	}
	w.volumes = vols
	// Names resolve from the pod's /etc/hosts only: no lookup leaves 127.0.0.0/8, and a name not
	// in it yet (a peer pod without an address) fails at once instead of waiting on a DNS server.
	if err := os.WriteFile(filepath.Join(w.dir, "resolv.conf"), []byte(resolvConf), 0o644); err != nil {
		return err
	}
	return w.a.writeHosts(w)
}

// volume materialises one volume and returns its directory on this machine.
func (w *podWorker) volume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (string, error) {
	dir := filepath.Join(w.dir, "volumes", v.Name)
	uid, gid := podOwner(pod)
	switch {
	case v.PersistentVolumeClaim != nil:
		p, err := w.a.claimDir(ctx, pod.Namespace, v.PersistentVolumeClaim.ClaimName)
		if err != nil {
			return "", err
		}
		return p, chownTree(p, uid, gid, true)
	case v.HostPath != nil:
		if t := v.HostPath.Type; t != nil && *t == corev1.HostPathDirectoryOrCreate {
			if err := os.MkdirAll(v.HostPath.Path, 0o755); err != nil {
				return "", err
			}
		}
		return v.HostPath.Path, nil
	case v.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return "", err
		}
		return dir, os.Chmod(dir, 0o777)
	}
	// Everything else is files written once from the API: Secret, ConfigMap, downward API,
	// projected. A fresh directory each time the pod is set up.
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var err error
	switch {
	case v.Secret != nil:
		err = w.secretFiles(ctx, pod, dir, v.Secret.SecretName, v.Secret.Items, v.Secret.DefaultMode, v.Secret.Optional)
	case v.ConfigMap != nil:
		err = w.configMapFiles(ctx, pod, dir, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.DefaultMode, v.ConfigMap.Optional)
	case v.DownwardAPI != nil:
		err = w.downwardFiles(pod, dir, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			switch {
			case src.Secret != nil:
				err = w.secretFiles(ctx, pod, dir, src.Secret.Name, src.Secret.Items, v.Projected.DefaultMode, src.Secret.Optional)
			case src.ConfigMap != nil:
				err = w.configMapFiles(ctx, pod, dir, src.ConfigMap.Name, src.ConfigMap.Items, v.Projected.DefaultMode, src.ConfigMap.Optional)
			case src.DownwardAPI != nil:
				err = w.downwardFiles(pod, dir, src.DownwardAPI.Items, v.Projected.DefaultMode)
			case src.ServiceAccountToken != nil:
				var tok string
				if tok, err = w.a.token(ctx, pod, src.ServiceAccountToken.Audience, src.ServiceAccountToken.ExpirationSeconds); err == nil {
					err = writeFile(dir, src.ServiceAccountToken.Path, []byte(tok), v.Projected.DefaultMode, nil)
				}
			}
			if err != nil {
				break
			}
		}
	default:
		return "", errors.New("unsupported volume type")
	}
	if err != nil {
		return "", err
	}
	return dir, chownTree(dir, uid, gid, false)
}

func (w *podWorker) secretFiles(ctx context.Context, pod *corev1.Pod, dir, name string, items []corev1.KeyToPath, mode *int32, optional *bool) error {
	s, err := w.a.kube.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && ptr.Deref(optional, false) {
			return nil
		}
		return fmt.Errorf("failed to read Secret %s: %w", name, err)
	}
	return writeItems(dir, s.Data, items, mode, ptr.Deref(optional, false))
}

func (w *podWorker) configMapFiles(ctx context.Context, pod *corev1.Pod, dir, name string, items []corev1.KeyToPath, mode *int32, optional *bool) error {
	cm, err := w.a.kube.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && name == "kube-root-ca.crt" && len(w.a.cfg.CAData) > 0 {
		// No root-ca-cert-publisher: the API server's CA is the agent's own.
		cm, err = &corev1.ConfigMap{Data: map[string]string{"ca.crt": string(w.a.cfg.CAData)}}, nil
	}
	if err != nil {
		if apierrors.IsNotFound(err) && ptr.Deref(optional, false) {
			return nil
		}
		return fmt.Errorf("failed to read ConfigMap %s: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return writeItems(dir, data, items, mode, ptr.Deref(optional, false))
}

func (w *podWorker) downwardFiles(pod *corev1.Pod, dir string, items []corev1.DownwardAPIVolumeFile, mode *int32) error {
	for _, it := range items {
		val := "0"
		if it.FieldRef != nil {
			v, err := w.fieldValue(pod, it.FieldRef.FieldPath)
			if err != nil {
				return err
			}
			val = v
		}
		if err := writeFile(dir, it.Path, []byte(val), mode, it.Mode); err != nil {
			return err
		}
	}
	return nil
}

func writeItems(dir string, data map[string][]byte, items []corev1.KeyToPath, mode *int32, optional bool) error {
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := writeFile(dir, k, data[k], mode, nil); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("key %q not found", it.Key)
		}
		if err := writeFile(dir, it.Path, v, mode, it.Mode); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dir, rel string, data []byte, defaultMode, mode *int32) error {
	clean := path.Clean("/" + rel)
	if clean == "/" || strings.Contains(rel, "..") {
		return fmt.Errorf("invalid file path %q", rel)
	}
	p := filepath.Join(dir, clean)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	m := fs.FileMode(0o644)
	if defaultMode != nil {
		m = fs.FileMode(*defaultMode)
	}
	if mode != nil {
		m = fs.FileMode(*mode)
	}
	if err := os.WriteFile(p, data, m); err != nil {
		return err
	}
	return os.Chmod(p, m)
}

// podOwner is the user and fsGroup the pod's files must be usable by: the non-root user the
// pod or one of its containers runs as (-1: leave as root), and the pod's fsGroup.
func podOwner(pod *corev1.Pod) (uid, gid int) {
	uid, gid = -1, -1
	if sc := pod.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil && *sc.RunAsUser != 0 {
			uid = int(*sc.RunAsUser)
		}
		if sc.FSGroup != nil {
			gid = int(*sc.FSGroup)
		}
	}
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if uid < 0 && c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser != 0 {
			uid = int(*c.SecurityContext.RunAsUser)
		}
	}
	return uid, gid
}

// chownTree makes a volume usable by the pod's user: owner uid, group gid with group
// read/write like the kubelet's fsGroup handling. Persistent volumes are changed recursively.
func chownTree(root string, uid, gid int, recursive bool) error {
	if uid < 0 && gid < 0 {
		return nil
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		if gid >= 0 && d.Type()&fs.ModeSymlink == 0 {
			if fi, err := d.Info(); err == nil {
				m := fi.Mode().Perm() | 0o040
				if d.IsDir() {
					m |= 0o070 | fs.ModeSetgid
				} else if recursive {
					m |= 0o020
				}
				_ = os.Chmod(p, m)
			}
		}
		return nil
	})
}

// serviceAccountVolume writes the service account token, CA and namespace the kubelet mounts
// at /var/run/secrets/kubernetes.io/serviceaccount when no admission plugin added that volume
// (envtest disables the ServiceAccount plugin). A missing ServiceAccount mounts nothing.
func (w *podWorker) serviceAccountVolume(ctx context.Context, pod *corev1.Pod) (string, error) {
	if !ptr.Deref(pod.Spec.AutomountServiceAccountToken, true) {
		return "", nil
	}
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.MountPath == serviceAccountDir {
				return "", nil
			}
		}
	}
	tok, err := w.a.token(ctx, pod, "", nil)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	dir := filepath.Join(w.dir, "volumes", saVolume)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{"token": []byte(tok), "ca.crt": w.a.cfg.CAData, "namespace": []byte(pod.Namespace)} {
		if err := writeFile(dir, name, data, nil, nil); err != nil {
			return "", err
		}
	}
	uid, gid := podOwner(pod)
	return dir, chownTree(dir, uid, gid, false)
}

// token requests a token of the pod's service account bound to the pod.
func (a *Agent) token(ctx context.Context, pod *corev1.Pod, audience string, expiration *int64) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(ptr.Deref(expiration, 3600*6)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	resp, err := a.kube.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("failed to request a token for ServiceAccount %s/%s: %w", pod.Namespace, sa, err)
	}
	return resp.Status.Token, nil
}

// launchSpec builds what the container init needs to run container c of pod.
func (w *podWorker) launchSpec(ctx context.Context, pod *corev1.Pod, c *container) (*launchSpec, error) {
	vars, order, err := w.containerEnv(ctx, pod, &c.spec)
	if err != nil {
		return nil, err
	}
	var cmd, args []string
	for _, s := range c.spec.Command {
		cmd = append(cmd, expand(s, vars))
	}
	for _, s := range c.spec.Args {
		args = append(args, expand(s, vars))
	}
	run, err := w.a.resolveRun(c.spec.Image, cmd, args)
	if err != nil {
		return nil, err
	}
	spec := &launchSpec{Argv: run.argv, Rootfs: run.rootfs, Dir: c.spec.WorkingDir, Hostname: w.hostname}
	if spec.Dir == "" {
		spec.Dir = run.workingDir
	}
	uid, gid, groups := containerUser(pod, &c.spec, run)
	spec.UID, spec.GID, spec.Groups = uid, gid, groups
	has := map[string]bool{}
	for _, k := range order {
		has[k] = true
		spec.Env = append(spec.Env, k+"="+vars[k])
	}
	for _, kv := range run.env {
		if k, _, _ := strings.Cut(kv, "="); !has[k] {
			has[k] = true
			spec.Env = append(spec.Env, kv)
		}
	}
	home := "/root"
	if uid != nil && *uid != 0 {
		home = "/"
	}
	for k, v := range map[string]string{
		"PATH":     "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOSTNAME": w.hostname,
		"HOME":     home,
	} {
		if !has[k] {
			spec.Env = append(spec.Env, k+"="+v)
		}
	}
	for _, m := range c.spec.VolumeMounts {
		src, ok := w.volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("volume %q of mount %s is not defined", m.Name, m.MountPath)
		}
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expand(m.SubPathExpr, vars)
		}
		if sub != "" {
			if strings.Contains(sub, "..") || filepath.IsAbs(sub) {
				return nil, fmt.Errorf("invalid subPath %q", sub)
			}
			src = filepath.Join(src, sub)
			if _, err := os.Stat(src); os.IsNotExist(err) {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, err
				}
			}
		}
		spec.Mounts = append(spec.Mounts, mountSpec{Source: src, Target: m.MountPath, ReadOnly: m.ReadOnly})
	}
	if src, ok := w.volumes[saVolume]; ok {
		spec.Mounts = append(spec.Mounts, mountSpec{Source: src, Target: serviceAccountDir, ReadOnly: true})
	}
	spec.Mounts = append(spec.Mounts, mountSpec{Source: filepath.Join(w.dir, "hosts"), Target: "/etc/hosts", ReadOnly: true},
		mountSpec{Source: filepath.Join(w.dir, "resolv.conf"), Target: "/etc/resolv.conf", ReadOnly: true})
	termTarget := c.spec.TerminationMessagePath
	if termTarget == "" {
		termTarget = corev1.TerminationMessagePathDefault
	}
	spec.Mounts = append(spec.Mounts, mountSpec{Source: w.termPath(c.spec.Name), Target: termTarget})
	return spec, nil
}

// runAs is the user, group and supplementary groups of a container (nil: root, as the agent).
func runAs(pod *corev1.Pod, c *corev1.Container) (uid, gid *int64, groups []int64) {
	if sc := pod.Spec.SecurityContext; sc != nil {
		uid, gid = sc.RunAsUser, sc.RunAsGroup
		if sc.FSGroup != nil {
			groups = append(groups, *sc.FSGroup)
		}
		groups = append(groups, sc.SupplementalGroups...)
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	if uid != nil && gid == nil {
		gid = ptr.To[int64](0)
	}
	return uid, gid, groups
}

// containerUser is runAs, with the image's user and group where the pod names none, as under a
// container runtime.
func containerUser(pod *corev1.Pod, c *corev1.Container, run *containerRun) (uid, gid *int64, groups []int64) {
	uid, gid, groups = runAs(pod, c)
	if uid != nil || run.uid == nil {
		return uid, gid, groups
	}
	uid = run.uid
	if gid == nil {
		gid = run.gid
	}
	if gid == nil {
		gid = ptr.To[int64](0)
	}
	return uid, gid, groups
}

// claimDir binds the claim (if needed) and returns its volume's directory.
func (a *Agent) claimDir(ctx context.Context, ns, name string) (string, error) {
	claim, err := a.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("failed to get PersistentVolumeClaim %s/%s: %w", ns, name, err)
	}
	if claim.DeletionTimestamp != nil {
		return "", fmt.Errorf("PersistentVolumeClaim %s/%s is being deleted", ns, name)
	}
	return a.bindClaim(ctx, claim)
}

func (a *Agent) pvDir(pvName string) string { return filepath.Join(a.opts.StateDir, "pv", pvName) }

// bindClaim gives a claim a hostPath PersistentVolume under the state dir, named after the
// claim's UID so a new claim of the same name starts empty, and marks both Bound, as the
// persistent volume controller and a provisioner would.
func (a *Agent) bindClaim(ctx context.Context, claim *corev1.PersistentVolumeClaim) (string, error) {
	pvName := "pvc-" + string(claim.UID)
	if claim.Spec.VolumeName != "" {
		pvName = claim.Spec.VolumeName
	}
	dir := a.pvDir(pvName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if claim.Status.Phase == corev1.ClaimBound && claim.Spec.VolumeName != "" {
		return dir, nil
	}
	capacity := corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}
	if q, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		capacity[corev1.ResourceStorage] = q
	}
	modes := claim.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName, Labels: map[string]string{"node.kube-dc.com/nodeagent": a.opts.NodeName},
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": "nodeagent", "pv.kubernetes.io/bound-by-controller": "yes"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity: capacity, AccessModes: modes, VolumeMode: claim.Spec.VolumeMode,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              ptr.Deref(claim.Spec.StorageClassName, ""),
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: dir, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}},
		},
	}
	created, err := a.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = a.kube.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	}
	if err != nil {
		return "", fmt.Errorf("failed to create PersistentVolume %s: %w", pvName, err)
	}
	if created.Status.Phase != corev1.VolumeBound {
		created.Status.Phase = corev1.VolumeBound
		if _, err := a.kube.CoreV1().PersistentVolumes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return "", fmt.Errorf("failed to mark PersistentVolume %s bound: %w", pvName, err)
		}
	}
	changed := false
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := a.kube.CoreV1().PersistentVolumeClaims(claim.Namespace).Get(ctx, claim.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != claim.UID {
			return fmt.Errorf("PersistentVolumeClaim %s was replaced", klog.KObj(claim))
		}
		if cur.Spec.VolumeName == pvName && cur.Status.Phase == corev1.ClaimBound {
			return nil
		}
		changed = true
		if cur.Spec.VolumeName == "" {
			cur.Spec.VolumeName = pvName
			if cur.Annotations == nil {
				cur.Annotations = map[string]string{}
			}
			cur.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
			cur.Annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
			if cur, err = a.kube.CoreV1().PersistentVolumeClaims(cur.Namespace).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
		cur.Status.Phase = corev1.ClaimBound
		cur.Status.AccessModes = modes
		cur.Status.Capacity = capacity
		_, err = a.kube.CoreV1().PersistentVolumeClaims(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("failed to bind PersistentVolumeClaim %s: %w", klog.KObj(claim), err)
	}
	if !changed {
		return dir, nil
	}
	a.log.Info("Bound PersistentVolumeClaim", "claim", klog.KObj(claim), "volume", pvName, "path", dir)
	return dir, nil
}

// syncClaim binds pending claims and, for a claim being deleted that no running pod uses,
// deletes its volume and data and lifts the protection finalizers.
func (a *Agent) syncClaim(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	claim, err := a.claims.PersistentVolumeClaims(ns).Get(name)
	if err != nil {
		return nil
	}
	if claim.DeletionTimestamp == nil {
		if claim.Status.Phase == corev1.ClaimBound {
			return nil
		}
		_, err := a.bindClaim(ctx, claim)
		return err
	}
	pods, err := a.pods.Pods(ns).List(everything)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == name {
				return nil // still in use; the pod's deletion brings us back here
			}
		}
	}
	if pvName := claim.Spec.VolumeName; pvName != "" {
		if err := a.removeFinalizer(ctx, "", pvName, pvFinalizer, true); err != nil {
			return err
		}
		if err := a.kube.CoreV1().PersistentVolumes().Delete(ctx, pvName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to delete PersistentVolume %s: %w", pvName, err)
		}
		_ = os.RemoveAll(a.pvDir(pvName))
	}
	return a.removeFinalizer(ctx, ns, name, pvcFinalizer, false)
}

func (a *Agent) removeFinalizer(ctx context.Context, ns, name, finalizer string, pv bool) error {
	patch := func(fins []string, uid types.UID) error {
		var keep []string
		for _, f := range fins {
			if f != finalizer {
				keep = append(keep, f)
			}
		}
		if len(keep) == len(fins) {
			return nil
		}
		body := fmt.Appendf(nil, `{"metadata":{"uid":%q,"finalizers":%s}}`, uid, jsonList(keep))
		var err error
		if pv {
			_, err = a.kube.CoreV1().PersistentVolumes().Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
		} else {
			_, err = a.kube.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
		}
		return err
	}
	var err error
	if pv {
		var o *corev1.PersistentVolume
		if o, err = a.kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); err == nil {
			err = patch(o.Finalizers, o.UID)
		}
	} else {
		var o *corev1.PersistentVolumeClaim
		if o, err = a.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			err = patch(o.Finalizers, o.UID)
		}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to remove finalizer %s from %s: %w", finalizer, name, err)
	}
	return nil
}

func jsonList(s []string) string {
	if len(s) == 0 {
		return "null"
	}
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ",") + "]"
}
