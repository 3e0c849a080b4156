package crds_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"kube-dc.com/etcd-backup/test/certmanager/crds"
)

func TestPaths(t *testing.T) {
	paths, err := crds.Paths()
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 {
		t.Fatalf("want one directory, got %v", paths)
	}
	for _, f := range []string{
		"cert-manager.io_certificates.yaml", "cert-manager.io_certificaterequests.yaml",
		"cert-manager.io_issuers.yaml", "cert-manager.io_clusterissuers.yaml",
		"acme.cert-manager.io_orders.yaml", "acme.cert-manager.io_challenges.yaml",
	} {
		data, err := os.ReadFile(filepath.Join(paths[0], f))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte("{{")) {
			t.Errorf("%s is a template; package crds must render it", f)
		}
	}
}
