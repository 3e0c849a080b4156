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

// DefaultImages maps the images of the project's tests to the binaries hack/bins.sh puts under
// bin/. Keys are matched as described on Options.Images. The product's own image runs from its
// archive (DefaultImageArchives).
func DefaultImages() map[string]string {
	etcd35 := filepath.Join(framework.EtcdDir(framework.EtcdVersion35), "etcd")
	etcd36 := filepath.Join(framework.EtcdDir(framework.EtcdVersion36), "etcd")
	etcd37 := filepath.Join(framework.EtcdDir(framework.EtcdVersion), "etcd")
	apiserver := filepath.Join(framework.KubeAssetsDir(), "kube-apiserver")
	m := map[string]string{
		"etcd":           etcd35,
		"kube-apiserver": apiserver,
		"kubectl":        framework.Kubectl(),
		"minio":          framework.MinIOBinary(),
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

// lookupImage finds image in a table keyed as Options.Images describes.
func lookupImage(table map[string]string, image string) (string, bool) {
	for _, k := range imageKeys(image) {
		if v, ok := table[k]; ok {
			return v, true
		}
	}
	return "", false
}

// resolveImage returns the local binary for image.
func resolveImage(images map[string]string, image string) (string, error) {
	bin, ok := lookupImage(images, image)
	if !ok {
		return "", &imageError{image}
	}
	if _, err := exec.LookPath(bin); err != nil {
		return "", fmt.Errorf("binary %s for image %q is not executable: %w", bin, image, err)
	}
	return bin, nil
}

// imageError says an image has neither an archive nor a local binary, reported as
// ErrImageNeverPull.
type imageError struct{ image string }

func (e *imageError) Error() string {
	return fmt.Sprintf("no image archive or local binary for image %q in the node agent's tables (Options.ImageArchives, Options.Images)", e.image)
}

// containerRun is how a container of an image runs: its argv and, for an image archive, the
// root filesystem and the image config's environment, user and working directory.
type containerRun struct {
	argv       []string
	rootfs     string
	env        []string
	uid, gid   *int64
	workingDir string
}

// resolveRun resolves a container's image and its command and args.
func (a *Agent) resolveRun(image string, command, args []string) (*containerRun, error) {
	if archive, ok := lookupImage(a.opts.ImageArchives, image); ok {
		root, err := a.roots.root(archive)
		if err != nil {
			return nil, err
		}
		argv, err := root.imageArgv(command, args)
		if err != nil {
			return nil, err
		}
		uid, gid, err := root.imageUser()
		if err != nil {
			return nil, err
		}
		return &containerRun{argv: argv, rootfs: root.dir, env: root.env, uid: uid, gid: gid, workingDir: root.workingDir}, nil
	}
	bin, err := resolveImage(a.opts.Images, image)
	if err != nil {
		return nil, err
	}
	return &containerRun{argv: resolveArgv(bin, command, args)}, nil
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
