package env

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot/prefix"
)

// Shared datastores (docs/restore.md, "Shared datastores: prefix mode") and multi-member ones ("Multi-member datastores").

// BackupMode is what the backup controller put on the tenant's CronJob: its mode and prefix
// annotations and the subcommand its container runs.
type BackupMode struct {
	Mode, Prefix, Command string
}

// BackupMode reads CronJob C-etcd-backup.
func (t *Tenant) BackupMode(ctx context.Context) (BackupMode, error) {
	var cj batchv1.CronJob
	if err := t.env.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: kdcv1alpha1.BackupCronJobName(t.Cluster)}, &cj); err != nil {
		return BackupMode{}, err
	}
	m := BackupMode{Mode: cj.Annotations[kdcv1alpha1.AnnotationBackupMode], Prefix: cj.Annotations[kdcv1alpha1.AnnotationBackupEtcdPrefix]}
	if cs := cj.Spec.JobTemplate.Spec.Template.Spec.Containers; len(cs) > 0 {
		m.Command = strings.Join(append(append([]string{}, cs[0].Command...), cs[0].Args...), " ")
	}
	return m, nil
}

// WaitBackupMode waits until the CronJob is in mode and its container runs subcommand.
func (t *Tenant) WaitBackupMode(ctx context.Context, mode, subcommand string, timeout time.Duration) (BackupMode, error) {
	var m BackupMode
	err := poll(ctx, timeout, 100*time.Millisecond, func() error {
		var err error
		if m, err = t.BackupMode(ctx); err != nil {
			return err
		}
		if m.Mode != mode || !strings.Contains(" "+m.Command+" ", " "+subcommand+" ") {
			return fmt.Errorf("CronJob %s: mode %q, command %q; want mode %s running %s", kdcv1alpha1.BackupCronJobName(t.Cluster), m.Mode, m.Command, mode, subcommand)
		}
		return nil
	})
	return m, err
}

// ObjectState is what a client sees of an object: its data and resourceVersion (the key's mod
// revision in etcd).
type ObjectState struct {
	Data            map[string]string
	ResourceVersion string
}

// ConfigMapStates lists the tenant's ConfigMaps in ns by name.
func (t *Tenant) ConfigMapStates(ctx context.Context, ns string) (map[string]ObjectState, error) {
	l, err := t.Kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]ObjectState{}
	for _, cm := range l.Items {
		out[cm.Name] = ObjectState{Data: cm.Data, ResourceVersion: cm.ResourceVersion}
	}
	return out, nil
}

// DiffStates lists what differs between two listings, one line per object.
func DiffStates(want, got map[string]ObjectState) []string {
	var diffs []string
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			diffs = append(diffs, name+" missing")
		case g.ResourceVersion != w.ResourceVersion || fmt.Sprint(g.Data) != fmt.Sprint(w.Data):
			diffs = append(diffs, fmt.Sprintf("%s: resourceVersion %s data %v, want %s %v", name, g.ResourceVersion, g.Data, w.ResourceVersion, w.Data))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			diffs = append(diffs, name+" added")
		}
	}
	sort.Strings(diffs)
	return diffs
}

// Poller lists a tenant's ConfigMaps through its API server every 20ms and compares each
// listing with the expected one, until Stop.
type Poller struct {
	mu      sync.Mutex
	ok      []time.Time
	errs    []time.Time
	wrong   []time.Time
	samples []string
	stop    chan struct{}
	done    chan struct{}
}

// StartPoller starts polling ns of t against want.
func (t *Tenant) StartPoller(ctx context.Context, ns string, want map[string]ObjectState) *Poller {
	p := &Poller{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			got, err := t.ConfigMapStates(ctx, ns)
			now := time.Now()
			p.mu.Lock()
			switch {
			case err != nil:
				p.errs = append(p.errs, now)
				p.sample(err.Error())
			case len(DiffStates(want, got)) > 0:
				p.wrong = append(p.wrong, now)
				p.sample(strings.Join(DiffStates(want, got), "; "))
			default:
				p.ok = append(p.ok, now)
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *Poller) sample(s string) {
	if len(p.samples) < 5 {
		p.samples = append(p.samples, s)
	}
}

// PollerReport counts the listings, in all and between from and to.
type PollerReport struct {
	OK, Errors, Wrong                   int
	OKDuring, ErrorsDuring, WrongDuring int
	Samples                             []string
}

// Stop ends the polling and counts the listings, those between from and to apart.
func (p *Poller) Stop(from, to time.Time) PollerReport {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	during := func(ts []time.Time) int {
		n := 0
		for _, t := range ts {
			if !t.Before(from) && !t.After(to) {
				n++
			}
		}
		return n
	}
	return PollerReport{OK: len(p.ok), Errors: len(p.errs), Wrong: len(p.wrong),
		OKDuring: during(p.ok), ErrorsDuring: during(p.errs), WrongDuring: during(p.wrong), Samples: p.samples}
}

// PrefixSnapshot is what a prefix snapshot in the bucket holds.
type PrefixSnapshot struct {
	Header  prefix.Header
	Trailer prefix.Trailer
	// Keys counts the records; Foreign lists those outside the tenant's own "<prefix>/" (at
	// most 10), Under counts the records under each of the prefixes asked about ("<p>/").
	Keys    int
	Foreign []string
	Under   map[string]int
}

// ReadPrefixSnapshot downloads the object key of the tenant's bucket and reads it as a prefix
// snapshot (docs/jobs.md, "Prefix snapshot form"), counting the keys under each of others too.
func (t *Tenant) ReadPrefixSnapshot(ctx context.Context, key string, others ...string) (*PrefixSnapshot, error) {
	obj, err := t.env.S3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(kdcv1alpha1.DefaultBucketName(t.Namespace)), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("failed to download %s: %w", key, err)
	}
	defer obj.Body.Close()
	rd, err := prefix.NewReader(obj.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	ps := &PrefixSnapshot{Header: rd.Header(), Under: map[string]int{}}
	own := t.EtcdPrefix + "/"
	var rec prefix.Record
	for {
		err := rd.Next(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		ps.Keys++
		k := string(rec.Key)
		if !strings.HasPrefix(k, own) && len(ps.Foreign) < 10 {
			ps.Foreign = append(ps.Foreign, k)
		}
		for _, o := range others {
			if strings.HasPrefix(k, o+"/") {
				ps.Under[o]++
			}
		}
	}
	ps.Trailer = rd.Trailer()
	return ps, nil
}

// EtcdMembers is what etcdctl says of the datastore's members, asked from a pod in the datastore's
// namespace with the datastore's client certificate.
type EtcdMembers struct {
	// MemberList and EndpointStatus are etcdctl's tables.
	MemberList, EndpointStatus string
	// Members: name and ID of each member; Started counts those with a name (etcdctl's "started").
	Members []string
	Started int
	// ClusterIDs and Leaders are the distinct cluster IDs and leader IDs the endpoints report;
	// LeaderEndpoints counts the endpoints that are the leader; Revisions is each endpoint's.
	ClusterIDs, Leaders []string
	LeaderEndpoints     int
	Revisions           []int64
}

// etcdctl's JSON (etcdserverpb messages as etcdctl prints them).
type memberListJSON struct {
	Header struct {
		ClusterID uint64 `json:"cluster_id"`
	} `json:"header"`
	Members []struct {
		ID   uint64 `json:"ID"`
		Name string `json:"name"`
	} `json:"members"`
}

type endpointStatusJSON struct {
	Endpoint string `json:"Endpoint"`
	Status   struct {
		Header struct {
			ClusterID uint64 `json:"cluster_id"`
			MemberID  uint64 `json:"member_id"`
			Revision  int64  `json:"revision"`
		} `json:"header"`
		Leader uint64 `json:"leader"`
	} `json:"Status"`
}

// EtcdMembers runs `etcdctl member list` and `etcdctl endpoint status` against every member of
// DS-etcd in a pod of the etcd image (TLS verified against the members' DNS names), waits for it
// and reads the output from its container logs.
func (t *Tenant) EtcdMembers(ctx context.Context) (*EtcdMembers, error) {
	e := t.env
	sts := kdcv1alpha1.EtcdStatefulSetName(t.DataStore)
	var eps []string
	for i := range t.Members {
		eps = append(eps, fmt.Sprintf("https://%s-%d.%s.%s.svc.cluster.local:%d", sts, i, sts, t.Namespace, etcdClientPort))
	}
	pki := func(f string) string { return etcdPKIMountPath + "/" + f }
	flags := []string{"--endpoints=" + strings.Join(eps, ","), "--cacert=" + pki(kdcv1alpha1.EtcdCertsCAKey),
		"--cert=" + pki(kdcv1alpha1.EtcdCertsCertKey), "--key=" + pki(kdcv1alpha1.EtcdCertsKeyKey), "--dial-timeout=5s", "--command-timeout=10s"}
	ctr := func(name string, args ...string) corev1.Container {
		return corev1.Container{Name: name, Image: EtcdImage(t.EtcdVersion), Command: []string{"etcdctl"}, Args: append(args, flags...),
			VolumeMounts: []corev1.VolumeMount{{Name: "etcd-certs", MountPath: etcdPKIMountPath, ReadOnly: true}}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: t.Namespace, GenerateName: sts + "-etcdctl-"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](tenantUID), RunAsGroup: ptr.To[int64](tenantUID), FSGroup: ptr.To[int64](tenantUID),
			},
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{
				ctr("member-list", "member", "list", "-w", "table"),
				ctr("member-list-json", "member", "list", "-w", "json"),
				ctr("endpoint-status", "endpoint", "status", "-w", "table"),
				ctr("endpoint-status-json", "endpoint", "status", "-w", "json"),
			},
			Volumes: []corev1.Volume{{Name: "etcd-certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: kdcv1alpha1.EtcdCertsSecretName(t.DataStore), DefaultMode: ptr.To[int32](0o440)}}}},
		},
	}
	if err := e.Client.Create(ctx, pod); err != nil {
		return nil, fmt.Errorf("failed to create the etcdctl pod: %w", err)
	}
	defer func() { _ = e.Client.Delete(context.Background(), pod, client.GracePeriodSeconds(0)) }()
	err := poll(ctx, time.Minute, 100*time.Millisecond, func() error {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		switch pod.Status.Phase {
		case corev1.PodSucceeded:
			return nil
		case corev1.PodFailed:
			return permanent(fmt.Errorf("etcdctl pod %s failed", pod.Name))
		}
		return fmt.Errorf("etcdctl pod %s is %s", pod.Name, pod.Status.Phase)
	})
	logs := func(name string) string {
		b, _ := os.ReadFile(e.Agent.LogPath(pod, name))
		return string(b)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: member list: %s; endpoint status: %s", err, logs("member-list"), logs("endpoint-status"))
	}
	m := &EtcdMembers{MemberList: logs("member-list"), EndpointStatus: logs("endpoint-status")}
	var ml memberListJSON
	if err := jsonLine(logs("member-list-json"), func(b []byte) bool { return json.Unmarshal(b, &ml) == nil && len(ml.Members) > 0 }); err != nil {
		return nil, fmt.Errorf("etcdctl member list -w json: %w", err)
	}
	for _, mem := range ml.Members {
		m.Members = append(m.Members, fmt.Sprintf("%s=%x", mem.Name, mem.ID))
		if mem.Name != "" {
			m.Started++
		}
	}
	var st []endpointStatusJSON
	if err := jsonLine(logs("endpoint-status-json"), func(b []byte) bool { return json.Unmarshal(b, &st) == nil && len(st) > 0 }); err != nil {
		return nil, fmt.Errorf("etcdctl endpoint status -w json: %w", err)
	}
	clusters, leaders := map[string]bool{}, map[string]bool{}
	for _, s := range st {
		clusters[fmt.Sprintf("%x", s.Status.Header.ClusterID)] = true
		leaders[fmt.Sprintf("%x", s.Status.Leader)] = true
		if s.Status.Leader == s.Status.Header.MemberID {
			m.LeaderEndpoints++
		}
		m.Revisions = append(m.Revisions, s.Status.Header.Revision)
	}
	m.ClusterIDs, m.Leaders = sortedKeys(clusters), sortedKeys(leaders)
	return m, nil
}

// jsonLine finds the line of out that ok accepts (etcdctl's client may log JSON lines on stderr too).
func jsonLine(out string, ok func([]byte) bool) error {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && ok([]byte(l)) {
			return nil
		}
	}
	return fmt.Errorf("no such line in %q", out)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
