package nodeagent_test

import (
	"fmt"
	"os"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kube-dc.com/etcd-backup/test/framework"
)

// etcdDir holds etcd and etcdctl v3.5, the default "etcd" image.
var etcdDir = framework.EtcdDir(framework.EtcdVersion35)

// shellPath lets a shell in an "etcd" container find the image's tools.
var shellPath = corev1.EnvVar{Name: "PATH", Value: etcdDir + ":/usr/bin:/bin"}

func newJob(ns, name string, c corev1.Container, mutate ...func(*batchv1.Job)) *batchv1.Job {
	if c.Name == "" {
		c.Name = "main"
	}
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{c},
			}},
		},
	}
	for _, m := range mutate {
		m(j)
	}
	return j
}

func jobCondition(g Gomega, j *batchv1.Job, t batchv1.JobConditionType) bool {
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(j), j)).To(Succeed())
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// jobPod is the (single) pod of job j.
func jobPod(g Gomega, j *batchv1.Job) *corev1.Pod {
	var pods corev1.PodList
	g.Expect(env.Client.List(ctx, &pods, client.InNamespace(j.Namespace), client.MatchingLabels{"batch.kubernetes.io/job-name": j.Name})).To(Succeed())
	g.Expect(pods.Items).To(HaveLen(1))
	return &pods.Items[0]
}

// runJob creates j, waits until it is Complete (or Failed, when failed is set) and returns
// its container's terminated state.
func runJob(j *batchv1.Job, failed bool) *corev1.ContainerStateTerminated {
	GinkgoHelper()
	Expect(env.Client.Create(ctx, j)).To(Succeed())
	want := batchv1.JobComplete
	if failed {
		want = batchv1.JobFailed
	}
	Eventually(func(g Gomega) {
		g.Expect(jobCondition(g, j, want)).To(BeTrue(), "job %s status %+v", j.Name, j.Status)
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	var term *corev1.ContainerStateTerminated
	Eventually(func(g Gomega) {
		pod := jobPod(g, j)
		g.Expect(pod.Status.ContainerStatuses).To(HaveLen(1))
		term = pod.Status.ContainerStatuses[0].State.Terminated
		g.Expect(term).NotTo(BeNil())
	}).WithTimeout(10 * time.Second).Should(Succeed())
	return term
}

var _ = Describe("Node agent", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = env.NewNamespace(ctx, "nodeagent")
		Expect(err).NotTo(HaveOccurred())
	})

	It("registers a Ready node", func() {
		var node corev1.Node
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: agent.NodeName()}, &node)).To(Succeed())
		Expect(node.Status.Conditions).To(ContainElement(And(
			HaveField("Type", corev1.NodeReady), HaveField("Status", corev1.ConditionTrue))))
		Expect(node.Status.Allocatable).To(HaveKey(corev1.ResourcePods))
	})

	It("runs the product's image from its archive: its own root filesystem, entrypoint and user", func() {
		// /kdc-etcd-backup exists only inside the image's root filesystem.
		j := newJob(ns, "version", corev1.Container{Image: "kdc-etcd-backup:v0.1.0", Command: []string{"/kdc-etcd-backup", "--version"}})
		term := runJob(j, false)
		Expect(term.ExitCode).To(BeZero())
		var pod *corev1.Pod
		Eventually(func(g Gomega) { pod = jobPod(g, j) }).Should(Succeed())
		out, err := os.ReadFile(agent.LogPath(pod, "main"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(out)).To(HavePrefix("kdc-etcd-backup v0.1.0 "))

		// Args alone go to the image's entrypoint.
		term = runJob(newJob(ns, "entrypoint", corev1.Container{
			Image: "kdc-etcd-backup:v0.1.0", Args: []string{"no-such-subcommand"},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		}), true)
		Expect(term.ExitCode).To(Equal(int32(64)))
		Expect(term.Message).To(ContainSubstring(`unknown subcommand "no-such-subcommand"`))
	})

	It("runs an image's entrypoint with args and expands $(VAR) from the downward API", func() {
		j := newJob(ns, "etcdctl", corev1.Container{
			Image:   "etcd:3.5.35-0",
			Command: []string{"etcdctl", "version"},
		})
		term := runJob(j, false)
		Expect(term.ExitCode).To(BeZero())
		var pod *corev1.Pod
		Eventually(func(g Gomega) { pod = jobPod(g, j) }).Should(Succeed())
		Expect(pod.Status.PodIP).To(HavePrefix("127."))
		Expect(pod.Status.Phase).To(Equal(corev1.PodSucceeded))
	})

	It("reports a failing Job's exit code and log tail, which a pod failure policy acts on", func() {
		j := newJob(ns, "fail", corev1.Container{
			Image:                    "etcd",
			Command:                  []string{"sh", "-c", "echo boom from $(POD_NAME) >&2; exit 3"},
			Env:                      []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		}, func(j *batchv1.Job) {
			j.Spec.BackoffLimit = ptr.To[int32](3)
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action:      batchv1.PodFailurePolicyActionFailJob,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{3}},
			}}}
		})
		term := runJob(j, true)
		Expect(term.ExitCode).To(BeEquivalentTo(3))
		Expect(term.Reason).To(Equal("Error"))
		Expect(term.Message).To(MatchRegexp(`^boom from fail-\w+\n$`))
		Expect(j.Status.Conditions).To(ContainElement(And(
			HaveField("Type", batchv1.JobFailed), HaveField("Reason", batchv1.JobReasonPodFailurePolicy))))
	})

	It("runs an etcd v3.5 StatefulSet whose PVC data survives scale 0 -> 1, reachable by Service names", func() {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "etcd"},
			Spec: corev1.ServiceSpec{
				ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "etcd"},
				Ports: []corev1.ServicePort{{Name: "client", Port: 2379}},
			},
		}
		Expect(env.Client.Create(ctx, svc)).To(Succeed())
		clientSvc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "etcd-client"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "etcd"},
				Ports:    []corev1.ServicePort{{Name: "client", Port: 12379, TargetPort: intstr.FromString("client")}},
			},
		}
		Expect(env.Client.Create(ctx, clientSvc)).To(Succeed())
		fieldEnv := func(name, path string) corev1.EnvVar {
			return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
		}
		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "etcd"},
			Spec: appsv1.StatefulSetSpec{
				Replicas:    ptr.To[int32](1),
				ServiceName: "etcd",
				Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "etcd"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "etcd"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name:  "etcd",
						Image: "etcd:v3.5.35",
						Command: []string{"/usr/local/bin/etcd",
							"--name=$(POD_NAME)",
							"--data-dir=/var/run/etcd/default.etcd",
							"--listen-client-urls=http://$(POD_IP):2379",
							"--advertise-client-urls=http://$(POD_NAME).etcd.$(POD_NAMESPACE).svc:2379",
							"--listen-peer-urls=http://$(POD_IP):2380",
							"--initial-advertise-peer-urls=http://$(POD_IP):2380",
							"--initial-cluster=$(POD_NAME)=http://$(POD_IP):2380",
						},
						Env: []corev1.EnvVar{
							fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace"), fieldEnv("POD_IP", "status.podIP"),
						},
						Ports: []corev1.ContainerPort{{Name: "client", ContainerPort: 2379}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromString("client")}},
							PeriodSeconds: 5, InitialDelaySeconds: 3,
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "etcd-data", MountPath: "/var/run/etcd"}},
					}}},
				},
				VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
					ObjectMeta: metav1.ObjectMeta{Name: "etcd-data"},
					Spec: corev1.PersistentVolumeClaimSpec{
						AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
						Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
					},
				}},
			},
		}
		Expect(env.Client.Create(ctx, sts)).To(Succeed())
		waitReady := func(replicas int32) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(sts), sts)).To(Succeed())
				g.Expect(sts.Status.ObservedGeneration).To(Equal(sts.Generation))
				g.Expect(sts.Status.ReadyReplicas).To(Equal(replicas))
				g.Expect(sts.Status.Replicas).To(Equal(replicas))
			}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
		}
		waitReady(1)

		By("binding the claim of the volumeClaimTemplate")
		var pvc corev1.PersistentVolumeClaim
		Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "etcd-data-etcd-0"}, &pvc)).To(Succeed())
		Expect(pvc.Status.Phase).To(Equal(corev1.ClaimBound))
		Expect(pvc.Spec.VolumeName).NotTo(BeEmpty())

		etcdctlJob := func(name, script string) *corev1.ContainerStateTerminated {
			return runJob(newJob(ns, name, corev1.Container{
				Image:                    "etcd",
				Command:                  []string{"sh", "-c", script},
				Env:                      []corev1.EnvVar{shellPath},
				SecurityContext:          &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000)},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}), false)
		}
		By("writing a key through the StatefulSet pod's DNS name, from a pod")
		term := etcdctlJob("put", "etcdctl --endpoints=http://etcd-0.etcd:2379 put greeting hello > /dev/termination-log")
		Expect(term.Message).To(Equal("OK\n"))

		By("scaling to 0 and back to 1")
		Expect(env.Client.Patch(ctx, sts, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"replicas":0}}`)))).To(Succeed())
		waitReady(0)
		Eventually(func(g Gomega) {
			var pods corev1.PodList
			g.Expect(env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": "etcd"})).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(env.Client.Patch(ctx, sts, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"replicas":1}}`)))).To(Succeed())
		waitReady(1)

		By("reading the key back through the ClusterIP Service (proxied to the target port) and the headless Service")
		for i, host := range []string{"etcd-client:12379", fmt.Sprintf("etcd.%s.svc.cluster.local:2379", ns)} {
			term = etcdctlJob(fmt.Sprintf("get-%d", i), "etcdctl --endpoints=http://"+host+" get greeting --print-value-only > /dev/termination-log")
			Expect(term.Message).To(Equal("hello\n"), "via %s", host)
		}
		var pod corev1.Pod
		Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "etcd-0"}, &pod)).To(Succeed())
		Expect(pod.Status.ContainerStatuses[0].Ready).To(BeTrue())
		Expect(strings.HasPrefix(pod.Status.PodIP, "127.")).To(BeTrue())
	})

	It("runs a Deployment with init containers, Secret/ConfigMap/emptyDir volumes, an exec probe and a restart", func() {
		Expect(env.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"},
			Data:       map[string][]byte{"user": []byte("admin"), "other": []byte("x")},
		})).To(Succeed())
		Expect(env.Client.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "conf"},
			Data:       map[string]string{"app.conf": "greeting=hi"},
		})).To(Succeed())
		const root = "/var/run/nodeagent-test"
		labels := map[string]string{"app": "web"}
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						TerminationGracePeriodSeconds: ptr.To[int64](5),
						Volumes: []corev1.Volume{
							{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
								SecretName: "creds", Items: []corev1.KeyToPath{{Key: "user", Path: "sub/user.txt"}}}}},
							{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
								LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}},
							{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						},
						InitContainers: []corev1.Container{{
							Name: "prepare", Image: "etcd",
							Command:      []string{"sh", "-c", "cp " + root + "/conf/app.conf " + root + "/work/ && echo $(POD_IP) > " + root + "/work/ip"},
							Env:          []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
							VolumeMounts: []corev1.VolumeMount{{Name: "conf", MountPath: root + "/conf", ReadOnly: true}, {Name: "work", MountPath: root + "/work"}},
						}},
						Containers: []corev1.Container{{
							Name: "main", Image: "etcd",
							// Crashes on its first run, then runs until stopped.
							Command: []string{"sh", "-c", "cd " + root + "/work; if [ ! -f crashed ]; then touch crashed; exit 1; fi; grep -q greeting=hi app.conf && touch ready; exec sleep 3600"},
							ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{
								"sh", "-c", "test -f " + root + "/work/ready && test $(cat " + root + "/secret/sub/user.txt) = admin"}}}},
							VolumeMounts: []corev1.VolumeMount{{Name: "creds", MountPath: root + "/secret", ReadOnly: true}, {Name: "work", MountPath: root + "/work"}},
						}},
					},
				},
			},
		}
		Expect(env.Client.Create(ctx, dep)).To(Succeed())
		var pod corev1.Pod
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(dep), dep)).To(Succeed())
			g.Expect(dep.Status.AvailableReplicas).To(BeEquivalentTo(1))
			var pods corev1.PodList
			g.Expect(env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels))).To(Succeed())
			g.Expect(pods.Items).To(HaveLen(1))
			pod = pods.Items[0]
		}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
		Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
		Expect(pod.Status.InitContainerStatuses[0].State.Terminated).To(HaveField("ExitCode", BeZero()))
		main := pod.Status.ContainerStatuses[0]
		Expect(main.Ready).To(BeTrue())
		Expect(main.RestartCount).To(BeEquivalentTo(1))
		Expect(main.LastTerminationState.Terminated).To(HaveField("ExitCode", BeEquivalentTo(1)))
		Expect(agent.LogPath(&pod, "main")).To(BeAnExistingFile())

		By("deleting the pod: its process stops and the Deployment replaces it")
		Expect(env.Client.Delete(ctx, &pod)).To(Succeed())
		Eventually(func(g Gomega) {
			var pods corev1.PodList
			g.Expect(env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels))).To(Succeed())
			g.Expect(pods.Items).To(HaveLen(1))
			g.Expect(pods.Items[0].UID).NotTo(Equal(pod.UID))
		}).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	})

	It("gives pods a service account token for in-cluster clients", func() {
		Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reader"}})).To(Succeed())
		term := runJob(newJob(ns, "whoami", corev1.Container{
			Image:                    "kubectl",
			Command:                  []string{"sh", "-c", "kubectl auth whoami -o jsonpath='{.status.userInfo.username}' > /dev/termination-log"},
			Env:                      []corev1.EnvVar{{Name: "PATH", Value: framework.KubeAssetsDir() + ":/usr/bin:/bin"}},
			SecurityContext:          &corev1.SecurityContext{RunAsUser: ptr.To[int64](65532)},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		}, func(j *batchv1.Job) { j.Spec.Template.Spec.ServiceAccountName = "reader" }), false)
		Expect(term.Message).To(Equal("system:serviceaccount:" + ns + ":reader"))
	})

	It("reports an image without a local binary as waiting", func() {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unknown"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "example.com/nothing:1"}}},
		}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
			g.Expect(pod.Status.Phase).To(Equal(corev1.PodPending))
			g.Expect(pod.Status.ContainerStatuses).To(ConsistOf(HaveField("State.Waiting.Reason", "ErrImageNeverPull")))
		}).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	})
})
