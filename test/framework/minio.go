package framework

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinIO root credentials of every test server; test-only values.
const (
	MinIOAccessKey = "kdc-test-root"
	MinIOSecretKey = "kdc-test-root-secret"
)

// MinIOOptions configure StartMinIO. Zero values get working defaults.
type MinIOOptions struct {
	// DataDir is the single-drive data directory; default a new directory under t.TempDir().
	DataDir string
	// Port of the S3 API on 127.0.0.1; default a free port.
	Port int
	// Buckets are created once the server is ready.
	Buckets []string
	// StartTimeout bounds waiting for readiness; default 60s.
	StartTimeout time.Duration
}

// MinIO is a real MinIO server on 127.0.0.1 with a temporary data directory and the root
// credentials MinIOAccessKey / MinIOSecretKey.
type MinIO struct {
	// Endpoint is the S3 endpoint URL, http://127.0.0.1:<port>.
	Endpoint  string
	AccessKey string
	SecretKey string
	DataDir   string
	// LogFile holds MinIO's output.
	LogFile string

	port         int
	startTimeout time.Duration
	cmd          *exec.Cmd
	done         chan struct{}
	err          error
}

// StartMinIO starts MinIO, waits until it is ready and creates o.Buckets. The process is
// stopped (by its PID) when the test ends. A missing binary fails the test with how to build it.
func StartMinIO(t testing.TB, o MinIOOptions) *MinIO {
	t.Helper()
	m, err := RunMinIO(context.Background(), t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Logf("failed to stop MinIO %s: %v", m.Endpoint, err)
		}
	})
	return m
}

// RunMinIO is StartMinIO for programs (the demo): dir holds the data (unless o.DataDir is set)
// and the log, and the caller stops the server with Stop.
func RunMinIO(ctx context.Context, dir string, o MinIOOptions) (*MinIO, error) {
	if o.DataDir == "" {
		o.DataDir = filepath.Join(dir, "data")
	}
	if o.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, fmt.Errorf("failed to find a free port: %w", err)
		}
		o.Port = p
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	m := &MinIO{
		Endpoint:     "http://" + MinIOHost + ":" + strconv.Itoa(o.Port),
		AccessKey:    MinIOAccessKey,
		SecretKey:    MinIOSecretKey,
		DataDir:      o.DataDir,
		LogFile:      filepath.Join(dir, "minio.log"),
		port:         o.Port,
		startTimeout: o.StartTimeout,
	}
	if err := m.start(); err != nil {
		return nil, fmt.Errorf("failed to start MinIO: %w", err)
	}
	for _, b := range o.Buckets {
		if err := m.CreateBucket(ctx, b); err != nil {
			_ = m.Stop()
			return nil, fmt.Errorf("failed to create bucket %q: %w", b, err)
		}
	}
	return m, nil
}

// MinIOHost is the address every test MinIO listens on.
const MinIOHost = "127.0.0.1"

// Port is the port of the S3 API.
func (m *MinIO) Port() int { return m.port }

func (m *MinIO) start() error {
	bin, err := RequireBinary(MinIOBinary())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return err
	}
	consolePort, err := FreePort()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	m.cmd = exec.Command(bin, "server", "--quiet",
		"--address", MinIOHost+":"+strconv.Itoa(m.port),
		"--console-address", MinIOHost+":"+strconv.Itoa(consolePort),
		m.DataDir)
	m.cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("failed to start %s: %w", bin, err)
	}
	m.done = make(chan struct{})
	done := m.done
	go func() {
		m.err = m.cmd.Wait()
		logf.Close()
		close(done)
	}()
	return m.waitReady()
}

// waitReady polls MinIO's liveness and readiness endpoints until both answer 200.
func (m *MinIO) waitReady() error {
	deadline := time.Now().Add(m.startTimeout)
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return fmt.Errorf("MinIO exited during start (%v); log %s:\n%s", m.err, m.LogFile, tail(m.LogFile, 2000))
		default:
		}
		ok := true
		for _, path := range []string{"/minio/health/live", "/minio/health/ready"} {
			resp, err := client.Get(m.Endpoint + path)
			if err != nil {
				ok, last = false, err
				break
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				ok, last = false, fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-m.done:
		case <-time.After(100 * time.Millisecond): // poll interval, not a fixed wait
		}
	}
	return fmt.Errorf("MinIO did not become ready within %s: %v; log %s:\n%s", m.startTimeout, last, m.LogFile, tail(m.LogFile, 2000))
}

// S3Client is an S3 client with the root credentials and path-style addressing.
func (m *MinIO) S3Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(m.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	})
}

// CreateBucket creates a bucket.
func (m *MinIO) CreateBucket(ctx context.Context, name string) error {
	_, err := m.S3Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	return err
}

// PID is the MinIO process id.
func (m *MinIO) PID() int { return m.cmd.Process.Pid }

// Running reports whether the process is still alive.
func (m *MinIO) Running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Kill SIGKILLs the MinIO process (by PID) and waits for it to be gone, to simulate a crash
// mid-request. Restart brings it back on the same port and data directory.
func (m *MinIO) Kill() error {
	if !m.Running() {
		return nil
	}
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-m.done
	return nil
}

// Restart starts a stopped or killed MinIO again on the same port and data directory.
func (m *MinIO) Restart() error {
	if m.Running() {
		return errors.New("MinIO is still running")
	}
	return m.start()
}

// Stop sends SIGTERM (by PID) and waits up to 30s, then SIGKILLs. Stopping a stopped server is
// a no-op.
func (m *MinIO) Stop() error {
	return stopProcess(m.cmd.Process, m.done, 30*time.Second)
}
