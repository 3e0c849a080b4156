package nodeagent

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"kube-dc.com/etcd-backup/test/framework"
)

// DefaultImageArchives maps the product's image to the archive `make image` writes: the agent
// runs it from the image's own root filesystem, as a container runtime would.
func DefaultImageArchives() map[string]string {
	return map[string]string{"kdc-etcd-backup": filepath.Join(framework.RootDir(), "bin", "kdc-etcd-backup-image.tar")}
}

// imageRoot is an image unpacked into a root filesystem, with the parts of its config a
// container runs with.
type imageRoot struct {
	dir        string
	entrypoint []string
	cmd        []string
	env        []string
	user       string
	workingDir string
}

// imageRoots unpacks each image archive once per content.
type imageRoots struct {
	mu    sync.Mutex
	dir   string
	roots map[string]*imageRoot // by archive path, size and mtime
}

// root returns the unpacked image of archive, unpacking it on first use.
func (r *imageRoots) root(archive string) (*imageRoot, error) {
	fi, err := os.Stat(archive)
	if err != nil {
		return nil, fmt.Errorf("image archive %s: %w (run `make image`)", archive, err)
	}
	key := fmt.Sprintf("%s|%d|%d", archive, fi.Size(), fi.ModTime().UnixNano())
	r.mu.Lock()
	defer r.mu.Unlock()
	if root, ok := r.roots[key]; ok {
		return root, nil
	}
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to read image archive %s: %w", archive, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	root := &imageRoot{
		dir:        filepath.Join(r.dir, id.Hex[:16], "rootfs"),
		entrypoint: cf.Config.Entrypoint, cmd: cf.Config.Cmd, env: cf.Config.Env,
		user: cf.Config.User, workingDir: cf.Config.WorkingDir,
	}
	if _, err := os.Stat(root.dir); errors.Is(err, os.ErrNotExist) {
		if err := unpack(mutate.Extract(img), root.dir); err != nil {
			return nil, fmt.Errorf("failed to unpack image archive %s: %w", archive, err)
		}
	}
	if r.roots == nil {
		r.roots = map[string]*imageRoot{}
	}
	r.roots[key] = root
	return root, nil
}

// unpack writes the flattened layers of an image into dir, through a temporary directory so a
// failed unpack never leaves a partial root filesystem.
func unpack(rc io.ReadCloser, dir string) error {
	defer rc.Close()
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	// The root filesystem is entered by the containers' users: world-traversable, as in an image.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		p := filepath.Join(tmp, filepath.FromSlash(name))
		mode := os.FileMode(h.Mode) & os.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		default:
			continue // devices, hard links and FIFOs: not in the images this agent runs
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		_ = os.Chtimes(p, time.Unix(0, 0), h.ModTime)
	}
	return os.Rename(tmp, dir)
}

// imageArgv is the argv of a container of the image, as a runtime builds it: command and args
// replace entrypoint and cmd, args alone replace cmd. A command without a slash is looked up in
// the image's PATH inside its root filesystem.
func (r *imageRoot) imageArgv(command, args []string) ([]string, error) {
	argv := append(append([]string{}, r.entrypoint...), r.cmd...)
	switch {
	case len(command) > 0:
		argv = append(append([]string{}, command...), args...)
	case len(args) > 0:
		argv = append(append([]string{}, r.entrypoint...), args...)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("image has no entrypoint and the container no command")
	}
	if !strings.Contains(argv[0], "/") {
		found := ""
		for _, dir := range filepath.SplitList(r.pathEnv()) {
			if isExecutable(filepath.Join(r.dir, dir, argv[0])) {
				found = path.Join(dir, argv[0])
				break
			}
		}
		if found == "" {
			return nil, fmt.Errorf("executable %q not found in the image's PATH %s", argv[0], r.pathEnv())
		}
		argv[0] = found
	}
	return argv, nil
}

func (r *imageRoot) pathEnv() string {
	for _, kv := range r.env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return v
		}
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// imageUser parses the config's User ("uid" or "uid:gid"; names are not supported here).
func (r *imageRoot) imageUser() (uid, gid *int64, err error) {
	if r.user == "" {
		return nil, nil, nil
	}
	u, g, hasGroup := strings.Cut(r.user, ":")
	var n int64
	if _, err := fmt.Sscan(u, &n); err != nil {
		return nil, nil, fmt.Errorf("image user %q is not numeric", r.user)
	}
	uid = &n
	if hasGroup {
		var m int64
		if _, err := fmt.Sscan(g, &m); err != nil {
			return nil, nil, fmt.Errorf("image group %q is not numeric", r.user)
		}
		gid = &m
	}
	return uid, gid, nil
}
