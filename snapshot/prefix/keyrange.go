package prefix

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
)

// KeyRange is the etcd key range [Start, End) of one tenant prefix: Start is the prefix with a
// trailing slash, End the first key after every key that starts with Start. "/acme_a" is
// ["/acme_a/", "/acme_a0"), which never covers "/acme_ab/..." (Kamaji grants its tenant roles
// the same range).
type KeyRange struct {
	Prefix string
	Start  string
	End    string
}

// RangeOf checks a tenant prefix (a kube-apiserver --etcd-prefix such as "/registry" or
// "/acme_production_dev_cp"; trailing slashes are dropped) and returns its key range.
func RangeOf(prefix string) (KeyRange, error) {
	p := strings.TrimRight(prefix, "/")
	switch {
	case p == "":
		return KeyRange{}, fmt.Errorf("etcd prefix %q covers the whole keyspace; give the tenant kube-apiserver's --etcd-prefix, e.g. /registry or /<Kamaji schema>", prefix)
	case strings.ContainsFunc(p, func(r rune) bool { return unicode.IsControl(r) || r > unicode.MaxASCII }):
		return KeyRange{}, fmt.Errorf("etcd prefix %q contains a control or non-ASCII character; give the tenant kube-apiserver's --etcd-prefix", prefix)
	}
	start := p + "/"
	// "/" + 1 is "0": every key starting with start sorts before p + "0".
	return KeyRange{Prefix: p, Start: start, End: p + "0"}, nil
}

// Contains reports whether key lies under the prefix, slash included.
func (r KeyRange) Contains(key []byte) bool {
	return bytes.HasPrefix(key, []byte(r.Start))
}
