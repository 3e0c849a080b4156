# kdc-etcd-backup: etcd backup and restore for hosted Kubernetes control planes.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

VERSION ?= v0.1.0
IMG ?= kdc-etcd-backup:$(VERSION)
LOCALBIN := $(CURDIR)/bin
TOOLS := $(LOCALBIN)/tools
CONTROLLER_GEN_VERSION := v0.23.0
STATICCHECK_VERSION := v0.8.2
CONTROLLER_GEN := $(TOOLS)/controller-gen
STATICCHECK := $(TOOLS)/staticcheck
LDFLAGS := -X kube-dc.com/etcd-backup/version.Version=$(VERSION) -X kube-dc.com/etcd-backup/version.Commit=$(shell git rev-parse --short HEAD 2>/dev/null)
# The image (make image): its binary and CA bundle go to IMAGE_DIR (the Dockerfile copies them
# from there), the archive to IMAGE_ARCHIVE. File and creation times are the commit's, so two
# builds of one commit give one digest.
IMAGE_DIR ?= $(LOCALBIN)/image
IMAGE_ARCHIVE ?= $(LOCALBIN)/kdc-etcd-backup-image.tar
IMAGE_SOURCE ?= https://kube-dc.com/etcd-backup
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REGISTRY ?=
CHART := charts/kdc-etcd-backup
# Test timeout: the integration and e2e suites start real control planes.
TEST_TIMEOUT ?= 45m
GO_TEST_FLAGS ?=

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code from the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs, RBAC and webhook configurations from markers.
	$(CONTROLLER_GEN) crd paths="./api/v1alpha1/..." output:crd:artifacts:config=manifests/crd/bases
	$(CONTROLLER_GEN) crd paths="./api/objectbucket/..." output:crd:artifacts:config=test/crds
	$(CONTROLLER_GEN) crd paths="./api/kamaji/..." output:crd:artifacts:config=test/crds
	$(CONTROLLER_GEN) rbac:roleName=kdc-etcd-backup-manager paths="./controller/...;./webhook/..." output:rbac:artifacts:config=manifests/rbac
	$(CONTROLLER_GEN) webhook paths="./webhook/..." output:webhook:artifacts:config=manifests/webhook
	@# The chart reads the same generated files: its own copies, since Helm reads only files inside the chart.
	mkdir -p $(CHART)/crds $(CHART)/files/generated
	cp manifests/crd/bases/*.yaml $(CHART)/crds/
	cp manifests/rbac/role.yaml $(CHART)/files/generated/role.yaml
	cp manifests/rbac/operator_roles.yaml $(CHART)/files/generated/operator_roles.yaml
	cp manifests/webhook/manifests.yaml $(CHART)/files/generated/webhooks.yaml

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(STATICCHECK) ## Check formatting and run staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(STATICCHECK) ./...

.PHONY: verify
verify: generate manifests ## Regenerate everything and fail if the committed files drift (incl. go.mod).
	@go mod tidy -diff || { echo "go.mod/go.sum are not tidy; run 'go mod tidy' and commit"; exit 1; }
	@if [ -n "$$(git status --porcelain -- api manifests test/crds $(CHART))" ]; then \
	  echo "generated files are out of date; run 'make generate manifests' and commit:"; \
	  git status --porcelain -- api manifests test/crds $(CHART); git --no-pager diff --stat -- api manifests test/crds $(CHART); exit 1; fi
	@echo "generated files are up to date"

##@ Test

.PHONY: bins
bins: ## Build the real test binaries (kube-apiserver, kube-controller-manager, kubectl, etcd 3.5/3.6/3.7, MinIO) and the pinned promtool and helm, cached.
	hack/bins.sh all

.PHONY: test
test: bins build vet verify ## Run every test (unit, integration on real components, e2e) after all set-up.
	go test -timeout $(TEST_TIMEOUT) $(GO_TEST_FLAGS) ./...

.PHONY: test-unit
test-unit: ## Run the unit tests only (no real components).
	go test -short ./api/... ./webhook/... ./controller/... ./engine/... ./jobspec/... ./schedule/... ./snapshot/... ./certs/... ./plugin/... ./location/...

.PHONY: test-e2e
test-e2e: bins build ## Run the end-to-end test (the demo's story with assertions).
	go test -timeout $(TEST_TIMEOUT) -v ./test/e2e/...

.PHONY: bench
bench: bins build ## Run the benchmarks and print their figures (see docs/benchmarks.md).
	go test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

##@ Build and run

.PHONY: build
build: ## Build the binary into bin/kdc-etcd-backup and the kubectl plugin into bin/kubectl-kdc.
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/ ./cmd/kdc-etcd-backup ./cmd/kdc-etcd-backup-manager ./cmd/kubectl-kdc

.PHONY: image
image: ## Build the OCI image archive bin/kdc-etcd-backup-image.tar without a Docker daemon (docs/install.md).
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o $(IMAGE_DIR)/ ./cmd/kdc-etcd-backup ./cmd/kdc-etcd-backup-manager
	go run ./hack/image build --binary $(IMAGE_DIR)/kdc-etcd-backup --manager-binary $(IMAGE_DIR)/kdc-etcd-backup-manager --ca-out $(IMAGE_DIR)/ca-certificates.crt \
	  --arch $$(go env GOARCH) --tag $(IMG) --out $(IMAGE_ARCHIVE) --version $(VERSION) \
	  --revision $$(git rev-parse HEAD 2>/dev/null) --source $(IMAGE_SOURCE) --created $(SOURCE_DATE_EPOCH)

.PHONY: image-push
image-push: image ## Push the image archive to $(REGISTRY)/kdc-etcd-backup:$(VERSION) (docker config credentials).
	@test -n "$(REGISTRY)" || { echo "set REGISTRY, e.g. make image-push REGISTRY=registry.example/team"; exit 1; }
	go run ./hack/image push --archive $(IMAGE_ARCHIVE) --ref $(REGISTRY)/kdc-etcd-backup:$(VERSION)

.PHONY: dist
dist: ## Build kubectl-kdc archives for linux/darwin on amd64/arm64, their checksums and the krew manifest into bin/dist.
	VERSION=$(VERSION) LDFLAGS="$(LDFLAGS)" SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) hack/dist.sh

.PHONY: run
run: build ## Run the manager against the current kubeconfig with a self-signed certificate.
	$(LOCALBIN)/kdc-etcd-backup-manager --leader-elect=false --webhook-cert-dir=$(LOCALBIN)/certs --self-signed-certs=localhost,127.0.0.1

.PHONY: demo
demo: bins build ## The main job: a local end-to-end run on real components.
	go run ./test/e2e/demo

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(TOOLS) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

$(STATICCHECK):
	GOBIN=$(TOOLS) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
