package nodeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is one running container process, started through the container init.
type process struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed when the process has been reaped
	code int           // exit code, valid after done; 128+signal when killed by a signal
	sig  syscall.Signal
}

// startProcess writes spec to specPath and starts the agent's own binary as the container init
// in a new mount and UTS namespace. It returns once the init has exec'd the container's
// process, or with the init's error if it could not.
func startProcess(self, specPath string, spec *launchSpec, out io.Writer) (*process, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(specPath, data, 0o600); err != nil {
		return nil, fmt.Errorf("failed to write launch spec: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(self)
	cmd.Env = []string{initEnv + "=" + specPath}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{w} // fd 3 == initStatusFD
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
		Setpgid:      true,
		Pdeathsig:    syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("failed to start container init: %w", err)
	}
	w.Close()
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go p.wait()
	msg, _ := io.ReadAll(r) // EOF without data: exec succeeded (the fd is close-on-exec)
	if len(msg) > 0 {
		<-p.done
		return nil, errors.New(string(msg))
	}
	return p, nil
}

func (p *process) wait() {
	err := p.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.sig = ws.Signal()
			p.code = 128 + int(ws.Signal())
		} else {
			p.code = ee.ExitCode()
		}
	default:
		p.code = 128
	}
	// The container's own children (its process group, led by the PID we started) go with it.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	close(p.done)
}

// stop sends SIGTERM to the process it started, then SIGKILL to its process group after grace.
func (p *process) stop(grace time.Duration) { p.stopOrKill(grace, nil) }

// stopOrKill is stop, killing at once when kill closes (a shortened grace period).
func (p *process) stopOrKill(grace time.Duration, kill <-chan struct{}) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(p.pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.done
	case <-kill:
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.done
	}
}
