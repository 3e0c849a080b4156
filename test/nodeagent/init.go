package nodeagent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// initEnv names the environment variable that turns a re-exec of the agent's own binary into a
// container init: it reads the launch spec from the file the variable names, sets up the
// container's mounts in the fresh mount namespace the agent created it in, drops privileges and
// execs the container's process (which keeps the init's PID).
const initEnv = "KDC_NODEAGENT_CONTAINER_INIT"

// initStatusFD is the descriptor the init reports a start error on; it is close-on-exec, so
// the agent reads EOF without data when the exec succeeded.
const initStatusFD = 3

// launchSpec is everything the container init needs, written by the agent as JSON.
type launchSpec struct {
	Argv []string `json:"argv"`
	// Rootfs, when set, is the image's unpacked root filesystem: mounts go inside it and the
	// process runs chrooted into it.
	Rootfs   string      `json:"rootfs,omitempty"`
	Env      []string    `json:"env"`
	Dir      string      `json:"dir,omitempty"`
	Hostname string      `json:"hostname,omitempty"`
	Mounts   []mountSpec `json:"mounts,omitempty"`
	UID      *int64      `json:"uid,omitempty"`
	GID      *int64      `json:"gid,omitempty"`
	Groups   []int64     `json:"groups,omitempty"`
}

// mountSpec bind-mounts Source (a directory or file under the agent's state dir) at Target.
type mountSpec struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

func init() {
	if path := os.Getenv(initEnv); path != "" {
		if err := containerInit(path); err != nil {
			status := os.NewFile(initStatusFD, "status")
			fmt.Fprintf(os.Stderr, "nodeagent container init: %v\n", err)
			if status != nil {
				fmt.Fprint(status, err.Error())
			}
			os.Exit(128)
		}
	}
}

// containerInit never returns on success: it execs the container's process.
func containerInit(path string) error {
	syscall.CloseOnExec(initStatusFD)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("failed to read launch spec: %w", err)
	}
	var spec launchSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("failed to parse launch spec %s: %w", path, err)
	}
	if len(spec.Argv) == 0 {
		return fmt.Errorf("launch spec %s has no command", path)
	}
	// The agent started us with CLONE_NEWNS and Go remounted / private, so nothing below
	// propagates to the host's mount namespace. Parents are mounted before children.
	mounts := append([]mountSpec(nil), spec.Mounts...)
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(filepath.Clean(mounts[i].Target), "/") < strings.Count(filepath.Clean(mounts[j].Target), "/")
	})
	if spec.Rootfs != "" {
		mounts = append(runtimeMounts(), mounts...)
	}
	for _, m := range mounts {
		if spec.Rootfs != "" {
			m.Target = filepath.Join(spec.Rootfs, m.Target)
		}
		if err := bindMount(m); err != nil {
			return err
		}
	}
	if spec.Rootfs != "" {
		if err := syscall.Chroot(spec.Rootfs); err != nil {
			return fmt.Errorf("failed to enter the image's root filesystem %s: %w", spec.Rootfs, err)
		}
		if err := os.Chdir("/"); err != nil {
			return err
		}
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("failed to set hostname %q: %w", spec.Hostname, err)
		}
	}
	if spec.Dir != "" {
		if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
			return fmt.Errorf("failed to create working dir %s: %w", spec.Dir, err)
		}
		if err := os.Chdir(spec.Dir); err != nil {
			return fmt.Errorf("failed to enter working dir %s: %w", spec.Dir, err)
		}
	}
	if spec.UID != nil || spec.GID != nil || len(spec.Groups) > 0 {
		groups := make([]int, 0, len(spec.Groups))
		for _, g := range spec.Groups {
			groups = append(groups, int(g))
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("failed to set supplementary groups %v: %w", groups, err)
		}
		if spec.GID != nil {
			if err := syscall.Setgid(int(*spec.GID)); err != nil {
				return fmt.Errorf("failed to set gid %d: %w", *spec.GID, err)
			}
		}
		if spec.UID != nil {
			if err := syscall.Setuid(int(*spec.UID)); err != nil {
				return fmt.Errorf("failed to set uid %d: %w", *spec.UID, err)
			}
		}
		// Changing credentials clears the parent-death signal; set it again.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("failed to set parent death signal: %w", err)
		}
		if os.Getppid() == 1 {
			return fmt.Errorf("node agent exited before the container started")
		}
	}
	argv0 := spec.Argv[0]
	if err := syscall.Exec(argv0, spec.Argv, spec.Env); err != nil {
		return fmt.Errorf("failed to exec %s: %w", argv0, err)
	}
	return nil
}

// runtimeMounts are what a container runtime gives every container of an image: /proc and the
// basic device nodes (each node on its own, so that /dev of the root filesystem stays its own).
func runtimeMounts() []mountSpec {
	m := []mountSpec{{Source: "/proc", Target: "/proc"}}
	for _, dev := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		m = append(m, mountSpec{Source: "/dev/" + dev, Target: "/dev/" + dev})
	}
	return m
}

func bindMount(m mountSpec) error {
	fi, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("failed to mount %s: %w", m.Target, err)
	}
	if fi.IsDir() {
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			return fmt.Errorf("failed to create mount point %s: %w", m.Target, err)
		}
	} else if _, err := os.Stat(m.Target); os.IsNotExist(err) {
		if err := os.MkdirAll(filepath.Dir(m.Target), 0o755); err != nil {
			return fmt.Errorf("failed to create mount point %s: %w", m.Target, err)
		}
		f, err := os.OpenFile(m.Target, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("failed to create mount point %s: %w", m.Target, err)
		}
		f.Close()
	}
	if err := unix.Mount(m.Source, m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("failed to bind-mount %s at %s: %w", m.Source, m.Target, err)
	}
	if m.ReadOnly {
		if err := unix.Mount("", m.Target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("failed to remount %s read-only: %w", m.Target, err)
		}
	}
	return nil
}
