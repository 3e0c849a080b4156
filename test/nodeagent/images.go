package nodeagent

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"kube-dc.com/etcd-backup/test/framework"
)

// DefaultImages maps the images of the project's manifests and tests to the binaries
// hack/bins.sh and the build put under bin/. Keys are matched as described on Options.Images.
func DefaultImages() map[string]string {
	etcd35 := filepath.Join(framework.EtcdDir(framework.EtcdVersion35), "etcd")
	etcd36 := filepath.Join(framework.EtcdDir(framework.EtcdVersion36), "etcd")
	etcd37 := filepath.Join(framework.EtcdDir(framework.EtcdVersion), "etcd")
	apiserver := filepath.Join(framework.KubeAssetsDir(), "kube-apiserver")
	m := map[string]string{
		"kdc-etcd-backup": filepath.Join(framework.RootDir(), "bin", "kdc-etcd-backup"),
		"etcd":            etcd35,
		"kube-apiserver":  apiserver,
		"kubectl":         framework.Kubectl(),
		"minio":           framework.MinIOBinary(),
	}
	for _, tag := range []string{"3.5", "v3.5", "3.5.35", "v3.5.35", "3.5.35-0"} {
		m["etcd:"+tag] = etcd35
	}
	for _, tag := range []string{"3.6", "v3.6", "3.6.16", "v3.6.16", "3.6.16-0"} {
		m["etcd:"+tag] = etcd36
	}
	for _, tag := range []string{"3.7", "v3.7", "3.7.3", "v3.7.3", "3.7.3-0"} {
		m["etcd:"+tag] = etcd37
	}
	return m
}

// imageKeys are the keys an image is looked up by, most specific first: the full reference,
// repository:tag with only the last path element, the repository, the last path element.
// "mirror/etcd:3.5.35-0" -> [mirror/etcd:3.5.35-0 etcd:3.5.35-0 mirror/etcd etcd].
func imageKeys(image string) []string {
	ref := image
	if i := strings.Index(ref, "@"); i >= 0 { // digest
		ref = ref[:i]
	}
	repo, tag := ref, ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, tag = ref[:i], ref[i+1:]
	}
	base := path.Base(repo)
	keys := []string{}
	if tag != "" {
		keys = append(keys, repo+":"+tag, base+":"+tag)
	}
	return append(keys, repo, base)
}

// resolveImage returns the local binary for image.
func resolveImage(images map[string]string, image string) (string, error) {
	for _, k := range imageKeys(image) {
		if bin, ok := images[k]; ok {
			if _, err := exec.LookPath(bin); err != nil {
				return "", fmt.Errorf("binary %s for image %q is not executable: %w", bin, image, err)
			}
			return bin, nil
		}
	}
	return "", &imageError{image}
}

// imageError says an image has no local binary, reported as ErrImageNeverPull.
type imageError struct{ image string }

func (e *imageError) Error() string {
	return fmt.Sprintf("no local binary for image %q in the node agent's image table (Options.Images)", e.image)
}

// resolveArgv turns a container's command and args into the argv to exec, the image's
// entrypoint being binary:
//   - no command: binary + args;
//   - command[0] names the binary (same base name): binary + command[1:] + args;
//   - command[0] names a file beside the binary (etcdctl in the etcd image): that file;
//   - command[0] is an executable of this machine (/bin/sh): that executable;
//   - otherwise: binary + command[1:] + args.
func resolveArgv(binary string, command, args []string) []string {
	if len(command) == 0 {
		return append([]string{binary}, args...)
	}
	rest := append(append([]string{}, command[1:]...), args...)
	base := path.Base(command[0])
	if base == filepath.Base(binary) {
		return append([]string{binary}, rest...)
	}
	if sibling := filepath.Join(filepath.Dir(binary), base); isExecutable(sibling) {
		return append([]string{sibling}, rest...)
	}
	if p, err := exec.LookPath(command[0]); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return append([]string{abs}, rest...)
		}
	}
	return append([]string{binary}, rest...)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
