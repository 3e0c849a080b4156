#!/usr/bin/env bash
# Builds, from the Go module proxy, the real binaries that tests and the demo run:
#   k8s     kube-apiserver, kube-controller-manager, kubectl (v1.37.2) plus etcd v3.7.3,
#           laid out as an envtest KUBEBUILDER_ASSETS directory: bin/k8s/
#   etcd    etcd, etcdctl, etcdutl for each version in ETCD_VERSIONS: bin/etcd-<version>/
#   minio   MinIO server: bin/minio/minio
#   promtool  Prometheus's promtool (rule unit tests): bin/tools/promtool
#   helm      Helm v4 (chart lint, template, install): bin/tools/helm
#
# Builds are idempotent and cached twice: bin/<dir>/.stamp records what bin/ holds, and a
# per-user cache keyed by version (${XDG_CACHE_HOME:-~/.cache}/kdc-etcd-backup) lets a fresh
# clone on the same machine relink in seconds. Wrapper modules live in that cache, never in
# this project's go.mod.
#
# Usage: hack/bins.sh [k8s|etcd|minio|promtool|helm|all]...
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="${ROOT}/bin"
CACHE="${KDC_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kdc-etcd-backup}"

K8S_VERSION=v1.37.2
# Bump when the layout of bin/ changes, so existing checkouts relink.
LAYOUT=2
K8S_STAGING_VERSION=v0.37.2
ETCD_MAIN_VERSION=v3.7.3
ETCD_VERSIONS=${ETCD_VERSIONS:-"v3.7.3 v3.6.16 v3.5.35"}
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# Prometheus's Go module versions track its releases: v0.316.0 is Prometheus 3.16.0.
PROMETHEUS_VERSION=v0.316.0
HELM_VERSION=v4.3.2

export GOFLAGS="${GOFLAGS:-} -trimpath"
export CGO_ENABLED=0

log() { printf '[bins] %s\n' "$*" >&2; }

# link_into DST_DIR SRC_DIR STAMP: hard-link (or copy) every file of SRC_DIR into DST_DIR.
link_into() {
  local dst=$1 src=$2 stamp=$3
  rm -rf "${dst}.tmp" && mkdir -p "${dst}.tmp"
  for f in "${src}"/*; do
    ln "$f" "${dst}.tmp/" 2>/dev/null || cp "$f" "${dst}.tmp/"
  done
  echo "${stamp}" >"${dst}.tmp/.stamp"
  rm -rf "${dst}" && mv "${dst}.tmp" "${dst}"
}

fresh() { [[ -f "$1/.stamp" && "$(cat "$1/.stamp")" == "$2" ]]; }

build_etcd() {
  local v=$1 out="${CACHE}/etcd-$1" src="${CACHE}/src/etcd-$1"
  if [[ ! -x "${out}/etcd" || ! -x "${out}/etcdctl" || ! -x "${out}/etcdutl" ]]; then
    log "building etcd ${v} (about 2 minutes cold)"
    rm -rf "${src}" && mkdir -p "${src}/etcd"
    cat >"${src}/etcd/main.go" <<GO
// Command etcd is a thin wrapper around the etcd server of the pinned version.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    # No `go mod tidy`: nothing imports etcdctl/etcdutl, so tidy would drop their pinned
    # requirements and the build would silently fetch the newest release instead.
    (cd "${src}" && go mod init kdc.local/etcdwrap >/dev/null 2>&1 &&
      go get "go.etcd.io/etcd/server/v3@${v}" "go.etcd.io/etcd/etcdctl/v3@${v}" "go.etcd.io/etcd/etcdutl/v3@${v}")
    (cd "${src}" && mkdir -p "${out}.tmp" &&
      go build -mod=mod -o "${out}.tmp/" ./etcd go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3)
    local b got
    for b in etcd etcdctl etcdutl; do
      if [[ $b == etcd ]]; then got=$("${out}.tmp/${b}" --version 2>&1); else got=$("${out}.tmp/${b}" version 2>&1); fi
      if ! grep -q "version: ${v#v}\|Version: ${v#v}" <<<"${got}"; then
        echo "built ${b} is not ${v}: $(head -1 <<<"${got}")" >&2
        exit 1
      fi
    done
    rm -rf "${out}" && mv "${out}.tmp" "${out}"
  fi
  fresh "${BIN}/etcd-${v}" "etcd-${v}" || link_into "${BIN}/etcd-${v}" "${out}" "etcd-${v}"
}

build_k8s() {
  local out="${CACHE}/k8s-${K8S_VERSION}" src="${CACHE}/src/k8s-${K8S_VERSION}"
  if [[ ! -x "${out}/kube-apiserver" || ! -x "${out}/kube-controller-manager" || ! -x "${out}/kubectl" ]]; then
    log "building kube-apiserver, kube-controller-manager, kubectl ${K8S_VERSION} (about 10 minutes cold)"
    rm -rf "${src}" && mkdir -p "${src}"
    local gomod
    gomod=$(cd "${src}" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    {
      echo "module kdc.local/k8swrap"
      echo
      echo "go 1.26"
      echo
      echo "require k8s.io/kubernetes ${K8S_VERSION}"
      echo
      # Every k8s.io staging module kubernetes requires at v0.0.0 is published as v0.x.y.
      grep -E '^\s+k8s\.io/[^ ]+ v0\.0\.0$' "${gomod}" | awk -v v="${K8S_STAGING_VERSION}" '{print "replace " $1 " => " $1 " " v}'
    } >"${src}/go.mod"
    log "$(grep -c '^replace' "${src}/go.mod") staging modules replaced"
    local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ld="-s -w"
    for p in $pkg $cpkg; do
      ld+=" -X ${p}.gitVersion=${K8S_VERSION} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${minor}"
      ld+=" -X ${p}.gitTreeState=clean -X ${p}.buildDate=1970-01-01T00:00:00Z"
    done
    (cd "${src}" && mkdir -p "${out}.tmp" &&
      go build -mod=mod -ldflags "${ld}" -o "${out}.tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
    rm -rf "${out}" && mv "${out}.tmp" "${out}"
  fi
  build_etcd "${ETCD_MAIN_VERSION}"
  local stamp="k8s-${K8S_VERSION}+etcd-${ETCD_MAIN_VERSION}+layout-${LAYOUT}"
  if ! fresh "${BIN}/k8s" "${stamp}"; then
    local tmp="${CACHE}/assets-${K8S_VERSION}-${ETCD_MAIN_VERSION}"
    rm -rf "${tmp}" && mkdir -p "${tmp}"
    # Hard links (or copies), not symlinks: pods of the e2e environment run these binaries as
    # non-root users, who cannot enter a per-user cache directory.
    for f in "${out}"/kube-apiserver "${out}"/kube-controller-manager "${out}"/kubectl "${CACHE}/etcd-${ETCD_MAIN_VERSION}"/etcd; do
      ln "$f" "${tmp}/" 2>/dev/null || cp "$f" "${tmp}/"
    done
    link_into "${BIN}/k8s" "${tmp}" "${stamp}"
  fi
}

build_minio() {
  local out="${CACHE}/minio-${MINIO_VERSION}"
  if [[ ! -x "${out}/minio" ]]; then
    log "building MinIO ${MINIO_VERSION} (about 7 minutes cold)"
    mkdir -p "${out}.tmp"
    GOBIN="${out}.tmp" go install "github.com/minio/minio@${MINIO_VERSION}"
    rm -rf "${out}" && mv "${out}.tmp" "${out}"
  fi
  fresh "${BIN}/minio" "minio-${MINIO_VERSION}" || link_into "${BIN}/minio" "${out}" "minio-${MINIO_VERSION}"
}

# build_tool NAME VERSION PACKAGE [LDFLAGS]: go install PACKAGE@VERSION into the cache, then link
# it into bin/tools. Neither module has replace directives, so no wrapper module is needed and
# neither touches this project's go.mod.
build_tool() {
  local tool=$1 v=$2 pkg=$3 ld=${4:-} out="${CACHE}/$1-$2"
  if [[ ! -x "${out}/${tool}" ]]; then
    log "building ${tool} ${v} (several minutes cold)"
    rm -rf "${out}.tmp" && mkdir -p "${out}.tmp"
    GOBIN="${out}.tmp" go install -ldflags "-s -w ${ld}" "${pkg}@${v}"
    rm -rf "${out}" && mv "${out}.tmp" "${out}"
  fi
  local dst="${BIN}/tools" stamp="${tool}-${v}"
  if [[ ! -x "${dst}/${tool}" || "$(cat "${dst}/.${tool}.stamp" 2>/dev/null)" != "${stamp}" ]]; then
    mkdir -p "${dst}" && rm -f "${dst}/${tool}"
    ln "${out}/${tool}" "${dst}/${tool}" 2>/dev/null || cp "${out}/${tool}" "${dst}/${tool}"
    echo "${stamp}" >"${dst}/.${tool}.stamp"
  fi
}

build_promtool() {
  build_tool promtool "${PROMETHEUS_VERSION}" github.com/prometheus/prometheus/cmd/promtool \
    "-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}"
}

build_helm() {
  build_tool helm "${HELM_VERSION}" helm.sh/helm/v4/cmd/helm \
    "-X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}"
}

mkdir -p "${BIN}" "${CACHE}/src"
targets=("$@"); [[ ${#targets[@]} -gt 0 ]] || targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    k8s) build_k8s ;;
    etcd) for v in ${ETCD_VERSIONS}; do build_etcd "$v"; done ;;
    minio) build_minio ;;
    promtool) build_promtool ;;
    helm) build_helm ;;
    all) build_k8s; for v in ${ETCD_VERSIONS}; do build_etcd "$v"; done; build_minio; build_promtool; build_helm ;;
    *) echo "unknown target $t (want k8s, etcd, minio, promtool, helm or all)" >&2; exit 2 ;;
  esac
done
