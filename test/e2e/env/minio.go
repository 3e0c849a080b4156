package env

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"kube-dc.com/etcd-backup/test/framework"
)

// minio is a MinIO server process on 127.0.0.1, the S3 endpoint Rook's RGW stands for. It is
// started here rather than with framework.StartMinIO, which needs a testing.TB, because the demo
// is a program.
type minio struct {
	Endpoint  string
	Host      string
	Port      int
	AccessKey string
	SecretKey string
	LogFile   string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startMinIO(ctx context.Context, dir string) (*minio, error) {
	bin, err := framework.RequireBinary(framework.MinIOBinary())
	if err != nil {
		return nil, err
	}
	port, err := framework.FreePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := framework.FreePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	m := &minio{
		Endpoint:  "http://127.0.0.1:" + strconv.Itoa(port),
		Host:      "127.0.0.1",
		Port:      port,
		AccessKey: framework.MinIOAccessKey,
		SecretKey: framework.MinIOSecretKey,
		LogFile:   filepath.Join(dir, "minio.log"),
		done:      make(chan struct{}),
	}
	logf, err := os.Create(m.LogFile)
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(bin, "server", "--quiet",
		"--address", "127.0.0.1:"+strconv.Itoa(port),
		"--console-address", "127.0.0.1:"+strconv.Itoa(consolePort), data)
	m.cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("failed to start %s: %w", bin, err)
	}
	go func() {
		m.err = m.cmd.Wait()
		logf.Close()
		close(m.done)
	}()
	if err := m.waitReady(ctx, time.Minute); err != nil {
		_ = m.Stop()
		return nil, err
	}
	return m, nil
}

func (m *minio) waitReady(ctx context.Context, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second}
	return poll(ctx, timeout, 100*time.Millisecond, func() error {
		select {
		case <-m.done:
			return permanent(fmt.Errorf("minio exited during start (%v), log %s", m.err, m.LogFile))
		default:
		}
		resp, err := c.Get(m.Endpoint + "/minio/health/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("minio readiness: HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

// S3 is an S3 client with the root credentials and path-style addressing.
func (m *minio) S3() *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(m.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	})
}

// Stop sends SIGTERM to the MinIO process (by its PID), then SIGKILL after 10s.
func (m *minio) Stop() error {
	if m == nil || m.cmd == nil || m.cmd.Process == nil {
		return nil
	}
	select {
	case <-m.done:
		return nil
	default:
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-m.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = m.cmd.Process.Kill()
	<-m.done
	return nil
}
