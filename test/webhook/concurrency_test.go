package webhook

import (
	"fmt"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

var _ = Describe("Concurrent restore requests", func() {
	It("accept exactly one of 20 clients annotating at once; 19 get RestoreInProgress", func() {
		const clients = 20
		ns, err := env.NewNamespace(ctx, "race")
		Expect(err).NotTo(HaveOccurred())
		Expect(env.Client.Create(ctx, newDataStore(ns, "ds", 1))).To(Succeed())
		c := newCluster(ns, "c1", "ds")
		Expect(env.Client.Create(ctx, c)).To(Succeed())

		users := make([]client.Client, clients)
		for i := range users {
			users[i], err = userClient(env, fmt.Sprintf("operator-%02d", i))
			Expect(err).NotTo(HaveOccurred())
		}

		start := make(chan struct{})
		errs := make([]error, clients)
		var wg sync.WaitGroup
		for i := range users {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				key := fmt.Sprintf("c1/c1-202601%02dT020000Z.db", i+1)
				<-start
				errs[i] = users[i].Patch(ctx, c.DeepCopy(), annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(key)}))
			}()
		}
		close(start)
		wg.Wait()

		winner := -1
		for i, err := range errs {
			if err == nil {
				Expect(winner).To(Equal(-1), "operator-%02d and operator-%02d were both accepted", winner, i)
				winner = i
				continue
			}
			expectRejected(err, kdcv1alpha1.ReasonRestoreInProgress)
		}
		Expect(winner).NotTo(Equal(-1), "no request was accepted: %v", errs)

		stored := &kdcv1alpha1.KdcCluster{}
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), stored)).To(Succeed())
		matchAnnotations(Default, stored.Annotations, stampedBy(fmt.Sprintf("operator-%02d", winner), fmt.Sprintf("c1/c1-202601%02dT020000Z.db", winner+1)))
	})
})
