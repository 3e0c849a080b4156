#!/usr/bin/env bash
# Builds the kubectl plugin's release files into DIST_DIR (default bin/dist): one archive per
# platform, kubectl-kdc_<version>_<os>_<arch>.tar.gz (the binary and its README), their SHA-256
# sums in kubectl-kdc_<version>_checksums.txt, and the krew manifest kdc.yaml pointing at
# DIST_URL/<archive>. Archives are reproducible: sorted entries, root ownership, the commit's time.
#
# Usage: VERSION=v0.1.0 LDFLAGS=... hack/dist.sh   (make dist)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${VERSION:?set VERSION}
OUT=${DIST_DIR:-${ROOT}/bin/dist}
PLATFORMS=${DIST_PLATFORMS:-"linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"}
URL=${DIST_URL:-https://kube-dc.com/etcd-backup/releases/download/${VERSION}}
EPOCH=${SOURCE_DATE_EPOCH:-0}

rm -rf "${OUT}" && mkdir -p "${OUT}"
work=$(mktemp -d) && trap 'rm -rf "${work}"' EXIT
platforms=""
for p in ${PLATFORMS}; do
  os=${p%/*} arch=${p#*/}
  archive="kubectl-kdc_${VERSION}_${os}_${arch}.tar.gz"
  dir="${work}/${os}_${arch}" && mkdir -p "${dir}"
  (cd "${ROOT}" && CGO_ENABLED=0 GOOS=${os} GOARCH=${arch} go build -trimpath -buildvcs=false \
    -ldflags "${LDFLAGS:-}" -o "${dir}/kubectl-kdc" ./cmd/kubectl-kdc)
  cp "${ROOT}/docs/plugin.md" "${dir}/README.md"
  chmod 0755 "${dir}/kubectl-kdc" && chmod 0644 "${dir}/README.md"
  tar --sort=name --mtime="@${EPOCH}" --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "${dir}" -cf - README.md kubectl-kdc | gzip -n -9 >"${OUT}/${archive}"
  sha=$(sha256sum "${OUT}/${archive}" | cut -d' ' -f1)
  platforms+="  - selector:
      matchLabels:
        os: ${os}
        arch: ${arch}
    uri: ${URL}/${archive}
    sha256: ${sha}
    bin: kubectl-kdc
    files:
    - from: kubectl-kdc
      to: .
    - from: README.md
      to: .
"
  echo "${OUT}/${archive}"
done
(cd "${OUT}" && sha256sum kubectl-kdc_*.tar.gz >"kubectl-kdc_${VERSION}_checksums.txt")
awk -v version="${VERSION}" -v platforms="${platforms%$'\n'}" '
  /^#/ { next }
  { gsub(/@VERSION@/, version) }
  /^@PLATFORMS@$/ { print platforms; next }
  { print }' "${ROOT}/hack/krew/kdc.yaml" >"${OUT}/kdc.yaml"
echo "${OUT}/kubectl-kdc_${VERSION}_checksums.txt"
echo "${OUT}/kdc.yaml"
