// Package image checks `make image`: two builds of one commit give one digest; the image holds
// the static binary and the CA bundle, runs as 65532 with the binary as entrypoint and carries
// the OCI labels; the Dockerfile describes the same image; and the archive pushes to a registry.
package image
