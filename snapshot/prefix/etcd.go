package prefix

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kube-dc.com/etcd-backup/snapshot"
)

// EtcdOptions say how to reach etcd: the tenant's own prefix-limited client certificate where
// one exists (Kamaji's <tcp>-datastore-certificate), so that etcd itself refuses any key outside
// the prefix; the datastore's DS-etcd-certs otherwise.
type EtcdOptions struct {
	// Endpoints are etcd client URLs; the first that answers Status is used for every call.
	Endpoints []string
	// CACert, Cert and Key are the client TLS files.
	CACert, Cert, Key string
	// DialTimeout bounds connecting and the Status call; snapshot.DefaultDialTimeout when 0.
	DialTimeout time.Duration
}

// etcdConn is a client bound to one member, and that member's status.
type etcdConn struct {
	cli       *clientv3.Client
	endpoint  string
	version   string
	clusterID uint64
	memberID  uint64
}

// errorf builds a *snapshot.Error of class code; %w in format sets its cause.
func errorf(code snapshot.ExitCode, format string, args ...any) *snapshot.Error {
	err := fmt.Errorf(format, args...)
	return &snapshot.Error{Code: code, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// connect returns a client of the first endpoint that answers Status. Every read of one
// revision then goes to the same member, so serializable reads of later pages are safe.
func connect(ctx context.Context, o EtcdOptions) (*etcdConn, error) {
	if len(o.Endpoints) == 0 {
		return nil, errorf(snapshot.ExitUsage, "--endpoints is required")
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = snapshot.DefaultDialTimeout
	}
	tlsCfg, err := transport.TLSInfo{CertFile: o.Cert, KeyFile: o.Key, TrustedCAFile: o.CACert}.ClientConfig()
	if err != nil {
		return nil, errorf(snapshot.ExitEtcdUnavailable, "failed to load the etcd client TLS files (--cacert %s, --cert %s, --key %s): %w; check the tenant's datastore certificate Secret is mounted", o.CACert, o.Cert, o.Key, err)
	}
	var errs []string
	for _, ep := range o.Endpoints {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{ep},
			TLS:         tlsCfg,
			DialTimeout: o.DialTimeout,
			Logger:      zap.NewNop(),
			Context:     ctx,
			DialOptions: []grpc.DialOption{grpc.WithInitialWindowSize(4 << 20), grpc.WithInitialConnWindowSize(4 << 20)},
			// Pages are bounded by bytes (pageBytes), but one key may be as large as etcd allows.
			MaxCallRecvMsgSize: 256 << 20,
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			cli.Close()
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		return &etcdConn{cli: cli, endpoint: ep, version: st.Version, clusterID: st.Header.ClusterId, memberID: st.Header.MemberId}, nil
	}
	return nil, errorf(snapshot.ExitEtcdUnavailable, "no etcd endpoint answered (%s); check --endpoints, the client certificate and that etcd is running", strings.Join(errs, "; "))
}

// etcdError classifies an etcd call's error during what: a missing permission is
// ExitAccessDenied (the certificate's user has no role on the range), a compacted revision and
// anything else ExitEtcdUnavailable (a retry can help).
func etcdError(what string, c *etcdConn, err error) error {
	var se *snapshot.Error
	if errors.As(err, &se) {
		return se
	}
	switch {
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrGRPCPermissionDenied),
		status.Code(err) == codes.PermissionDenied:
		return errorf(snapshot.ExitAccessDenied, "etcd %s refused to %s: %w; the client certificate's user needs a readwrite role on the tenant's prefix range", c.endpoint, what, err)
	case errors.Is(err, rpctypes.ErrCompacted), errors.Is(err, rpctypes.ErrGRPCCompacted):
		return errorf(snapshot.ExitEtcdUnavailable, "etcd %s compacted the revision being read while trying to %s: %w; retry (the next run reads a newer revision)", c.endpoint, what, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrGRPCRequestTooLarge),
		errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrGRPCTooManyOps):
		return errorf(snapshot.ExitUsage, "etcd %s refused to %s: %w; lower --max-txn-ops / --max-request-bytes to the etcd server's limits", c.endpoint, what, err)
	}
	return errorf(snapshot.ExitEtcdUnavailable, "failed to %s on etcd %s: %w; check etcd's health", what, c.endpoint, err)
}
