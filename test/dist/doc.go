// Package dist checks `make dist`: the kubectl plugin's archives hold a binary of the right
// platform, the checksums file and the krew manifest agree with the archives, and the manifest
// is the one krew expects.
package dist
