// Package kamaji is a stand-in for Kamaji's TenantControlPlane controller, which cannot be built
// here: it does to a tenant's control plane Deployment what Kamaji does (each behaviour names the
// Kamaji source file it follows), so the restore's drain can be tested against an owner that
// scales the Deployment back. It is test code; in production Kamaji runs.
package kamaji
