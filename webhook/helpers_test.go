package webhook

import (
	"encoding/json"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
)

func jsonOf(obj runtime.Object) ([]byte, error) { return json.Marshal(obj) }

// cutType splits a status cause message "Invalid value: \"x\": InvalidKey: ..." or
// "Forbidden: InvalidKey: ..." into the type part and the detail.
func cutType(msg string) (string, string, bool) {
	for _, r := range reasons {
		if i := strings.Index(msg, r+": "); i >= 0 {
			return msg[:i], msg[i:], true
		}
	}
	return msg, "", false
}

// reasonInMessage finds the first known reason in an error message.
func reasonInMessage(msg string) string {
	_, d, ok := cutType(msg)
	if !ok {
		return ""
	}
	r, _, _ := strings.Cut(d, ": ")
	return r
}
