// Package certs holds the manager's serving-certificate handling:
//
//   - Watcher serves the webhook with the certificate cert-manager writes into the cert dir
//     (the mounted Secret of the serving Certificate): it waits for the files to appear, reloads
//     them when cert-manager rotates them (controller-runtime's certwatcher), and backs the
//     readiness check, which fails until a certificate that is valid now is loaded.
//   - EnsureSelfSigned writes a self-signed CA and serving certificate into the cert dir for local
//     runs without cert-manager (manager flag --self-signed-certs); it never overwrites a
//     certificate that is still valid.
package certs
