package snapshot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"kube-dc.com/etcd-backup/jobspec"
)

// Environment variables holding the S3 credentials; the only place credentials come from.
const (
	EnvAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken    = "AWS_SESSION_TOKEN"
)

// DefaultRegion is the signing region when none is given.
const DefaultRegion = jobspec.DefaultRegion

// S3Location is where snapshots live (jobspec.S3Location).
type S3Location = jobspec.S3Location

// Credentials are the static S3 credentials.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// CredentialsFromEnv reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN
// when set) and nothing else.
func CredentialsFromEnv() (Credentials, error) {
	c := Credentials{
		AccessKeyID:     os.Getenv(EnvAccessKeyID),
		SecretAccessKey: os.Getenv(EnvSecretAccessKey),
		SessionToken:    os.Getenv(EnvSessionToken),
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return c, errorf(ExitUsage, "environment variables %s and %s must be set; check the Job's secretKeyRef to the S3 credential Secret", EnvAccessKeyID, EnvSecretAccessKey)
	}
	return c, nil
}

// NewS3Client builds an S3 client for loc with static credentials, path-style addressing, and
// checksums only where this package asks for them. It reads no shared config and no instance
// metadata.
func NewS3Client(loc S3Location, cred Credentials) *s3.Client {
	region := loc.Region
	if region == "" {
		region = DefaultRegion
	}
	httpClient := awshttp.NewBuildableClient().WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = 10 * time.Second
	}).WithTransportOptions(func(t *http.Transport) {
		t.ResponseHeaderTimeout = 2 * time.Minute
	})
	return s3.New(s3.Options{
		Region:                     region,
		BaseEndpoint:               aws.String(loc.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(cred.AccessKeyID, cred.SecretAccessKey, cred.SessionToken),
		HTTPClient:                 httpClient,
		RetryMaxAttempts:           3,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		// The SDK logs a warning when it cannot validate a composite checksum; this package
		// validates those itself.
		DisableLogOutputChecksumValidationSkipped: true,
	})
}

// S3 error codes this package tells apart.
const (
	codeNoSuchKey             = "NoSuchKey"
	codeNoSuchBucket          = "NoSuchBucket"
	codeNotFound              = "NotFound"
	codeAccessDenied          = "AccessDenied"
	codeInvalidAccessKeyID    = "InvalidAccessKeyId"
	codeSignatureDoesNotMatch = "SignatureDoesNotMatch"
	codeNoSuchLifecycle       = "NoSuchLifecycleConfiguration"
	codeNotImplemented        = "NotImplemented"
	codeBadDigest             = "BadDigest"
	codeInvalidDigest         = "InvalidDigest"
	codeXAmzContentSHA256     = "XAmzContentSHA256Mismatch"
	codeInvalidPart           = "InvalidPart"
)

// apiCode is the S3 error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus is the HTTP status of err's response, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// s3Error classifies err from an S3 call during what on object (bucket/key) into an *Error with
// a one-line message saying what to check.
func s3Error(what string, loc S3Location, objectKey string, err error) *Error {
	obj := fmt.Sprintf("s3://%s/%s", loc.Bucket, objectKey)
	if objectKey == "" {
		obj = fmt.Sprintf("bucket %q", loc.Bucket)
	}
	code, status := apiCode(err), httpStatus(err)
	switch {
	case code == codeNoSuchBucket:
		return errorf(ExitBucketMissing, "failed to %s %s: bucket %q does not exist at %s; check --bucket (the ObjectBucketClaim's bucket or destinationPath) (%w)", what, obj, loc.Bucket, loc.Endpoint, err)
	case code == codeNoSuchKey || ((code == codeNotFound || status == http.StatusNotFound) && objectKey != ""):
		return errorf(ExitObjectMissing, "failed to %s %s: the object does not exist; check the key (list the cluster's snapshots under its prefix) (%w)", what, obj, err)
	case code == codeAccessDenied || code == codeInvalidAccessKeyID || code == codeSignatureDoesNotMatch || status == http.StatusForbidden:
		return errorf(ExitAccessDenied, "failed to %s %s: access denied (%s); check the S3 credential Secret (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and its permissions on the bucket (%w)", what, obj, orDefault(code, "HTTP 403"), err)
	case code == codeBadDigest || code == codeInvalidDigest || code == codeXAmzContentSHA256 || code == codeInvalidPart:
		return errorf(ExitIntegrity, "failed to %s %s: S3 rejected the data's checksum (%s); the data was damaged in transit, retry (%w)", what, obj, code, err)
	case isUnreachable(err):
		return errorf(ExitS3Unreachable, "failed to %s %s: S3 endpoint %s is unreachable; check --s3-endpoint and the network path to it (%w)", what, obj, loc.Endpoint, err)
	}
	return errorf(ExitFailed, "failed to %s %s at %s: %w", what, obj, loc.Endpoint, err)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// isUnreachable reports whether err is a network failure reaching the endpoint, as opposed to an
// answer from it.
func isUnreachable(err error) bool {
	if apiCode(err) != "" && httpStatus(err) != 0 {
		return false
	}
	var ne net.Error
	var oe *net.OpError
	var de *net.DNSError
	var ue *url.Error
	var re *smithyhttp.RequestSendError
	return errors.As(err, &re) || errors.As(err, &oe) || errors.As(err, &de) || errors.As(err, &ue) || errors.As(err, &ne)
}

// checkBucket distinguishes a missing bucket from other failures after a 404 without a body
// (HEAD requests carry no error code).
func checkBucket(ctx context.Context, c *s3.Client, loc S3Location) error {
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(loc.Bucket)}); err != nil {
		if httpStatus(err) == http.StatusNotFound || apiCode(err) == codeNotFound || apiCode(err) == codeNoSuchBucket {
			return errorf(ExitBucketMissing, "bucket %q does not exist at %s; check --bucket (the ObjectBucketClaim's bucket or destinationPath) (%w)", loc.Bucket, loc.Endpoint, err)
		}
		return s3Error("check", loc, "", err)
	}
	return nil
}
