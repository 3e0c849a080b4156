package framework

import (
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// ManagerOptions are the controller-runtime manager options of the suites' in-process managers:
// the tests' Scheme, no metrics server and no health probes (nothing listens), and no
// controller-name check, since controller names are process-global and a suite starts managers
// again (a restart) in one process. Callers add what their manager needs.
func ManagerOptions() ctrl.Options {
	return ctrl.Options{
		Scheme:                 Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	}
}
