package framework

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// stopProcess ends a process this framework started, by its PID: SIGTERM, then SIGKILL if it
// has not exited within grace. done is closed when the process has exited; stopProcess returns
// once it is. Stopping an exited process is a no-op.
func stopProcess(p *os.Process, done <-chan struct{}, grace time.Duration) error {
	select {
	case <-done:
		return nil
	default:
	}
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-done
	return nil
}
