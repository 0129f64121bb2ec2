# harbor-connector. Everything the targets need is installed by the project's own scripts into
# $(CACHE), outside the work tree, keyed by version, so a second run is fast.
SHELL := /usr/bin/env bash -o pipefail
CACHE ?= $(or $(HARBOR_CONNECTOR_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/harbor-connector)
export HARBOR_CONNECTOR_CACHE := $(CACHE)
BIN := bin
CONTROLLER_GEN_PKG := sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
PHASE := test/tools/phase.sh
# The Kubernetes release of the whole test bed (API server, etcd, kubectl, kubelet,
# controller-manager, scheduler); its default is in test/tools/versions.env with the other
# test bed versions. `make test K8S_VERSION=v1.35.4` runs everything on another release.
K8S_VERSION ?= $(shell sed -n 's/^K8S_VERSION=//p' test/tools/versions.env)
export K8S_VERSION
# The releases make test-matrix runs: both ends of the supported range (README "Supported versions").
MATRIX ?= v1.35.4 $(K8S_VERSION)
# Prefixes phase names in make test-matrix with the release they ran on.
PHASE_PREFIX ?=

.PHONY: all build images generate test test-matrix matrix-one e2e e2e-day2 e2e-tools envtest-assets node-deps clients trust-manager bench bench-scale bench-cluster fuzz demo deploy undeploy chart install-file helm-adopt helm fmt vet alerts

all: build

# The kubelet runs a credential provider by the name its config gives (README "Per-pod pulls"),
# so cmd/credential-provider's binary gets that name.
build: ## Build every shipped binary into ./bin.
	go build -o $(BIN)/ ./cmd/...
	mv -f $(BIN)/credential-provider $(BIN)/connectors-credential-provider

# make images: REGISTRY (a repository prefix, e.g. 127.0.0.1:5000/harbor-connector) pushes and
# writes the overlay OVERLAY (default config/overlays/images, which make deploy applies); TAG defaults to the version in test/images/names.go; REGISTRY_CA
# is a PEM CA to trust for REGISTRY; CA_BUNDLE is the bundle copied into the images.
REGISTRY ?=
TAG ?=
REGISTRY_CA ?=
# The overlay make images writes and make deploy applies; a folder under config/overlays (the
# e2e suite uses its own, so a run never replaces the overlay of the user's registry).
OVERLAY ?= config/overlays/images
export OVERLAY
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt

images: ## OCI images (linux/amd64+arm64, reproducible, with SBOMs) into bin/images; REGISTRY=host/path also pushes them and writes the overlay $(OVERLAY).
	go run ./test/tools/images -out $(BIN)/images -registry "$(REGISTRY)" -tag "$(TAG)" -registry-ca "$(REGISTRY_CA)" -ca-bundle "$(CA_BUNDLE)" -overlay "$(OVERLAY)"

generate: ## Regenerate deepcopy, the CRD and RBAC from the Go markers.
	@cg=$$(test/tools/go-tool.sh controller-gen $(CONTROLLER_GEN_PKG)); \
	$$cg object paths=./api/... && \
	$$cg crd paths=./api/... output:crd:artifacts:config=config/crd/bases && \
	$$cg rbac:roleName=connectors-manager paths="./controller/...;./webhook/..." output:rbac:artifacts:config=config/rbac && \
	$$cg rbac:roleName=connectors-proxy paths="./proxyserver/..." output:rbac:artifacts:config=config/proxy && \
	$$cg rbac:roleName=connectors-csi paths="./csi/..." output:rbac:artifacts:config=config/csi

envtest-assets: ## Build kube-apiserver, etcd and kubectl ($(K8S_VERSION)) from the module proxy into the cache.
	@test/tools/k8s-assets.sh >/dev/null

clients: ## Install the pinned registry clients (crane, oras, regctl, skopeo).
	@test/tools/clients.sh >/dev/null

trust-manager: ## Build trust-manager (TRUST_MANAGER_VERSION in test/tools/versions.env) from the module proxy into the cache; test/trust runs it.
	@test/tools/trust-manager.sh >/dev/null

fmt:
	gofmt -l -w $$(git ls-files '*.go')

vet:
	go vet ./...

test: ## Everything CI runs: generated files fresh, vet, unit and envtest suites. Prints phase durations.
	@$(PHASE) --reset
	@$(PHASE) "envtest assets (kube-apiserver, etcd, kubectl)" test/tools/k8s-assets.sh
	@$(PHASE) "registry clients" test/tools/clients.sh
	@$(PHASE) "trust-manager (built from the module proxy)" test/tools/trust-manager.sh
	@$(PHASE) "generated files are up to date" test/tools/check-generated.sh
	@$(PHASE) "build" go build ./...
	@$(PHASE) "go vet (also the e2e- and day2-tagged suites)" bash -c "go vet ./... && go vet -tags e2e,day2 ./test/..."
	@$(PHASE) "go test" env KUBEBUILDER_ASSETS=$$(test/tools/k8s-assets.sh 2>/dev/null) go test -count=1 -timeout 30m ./...
	@$(PHASE) "helm (built from the module proxy)" test/tools/helm.sh
	@$(PHASE) "Helm chart: helm lint, default render equals kustomize's (test/tools/helm)" go -C test/tools/helm test -count=1 ./...
	@$(PHASE) "alerting rules (test/tools/promrules, a module of its own: Prometheus's rule parser, the binaries' registries)" $(MAKE) --no-print-directory alerts
	@$(MAKE) --no-print-directory e2e
	@$(PHASE) "demo (make demo must keep working)" go run ./test/demo
	@test/tools/phase.sh --summary

test-matrix: ## The envtest suites and the real-node suite on each release in MATRIX (default: v1.35.4 and K8S_VERSION). Root. Prints phase durations.
	@$(PHASE) --reset
	@$(PHASE) "registry clients" test/tools/clients.sh
	@$(PHASE) "trust-manager (built from the module proxy)" test/tools/trust-manager.sh
	@for v in $(MATRIX); do $(MAKE) --no-print-directory matrix-one K8S_VERSION=$$v PHASE_PREFIX="[$$v] " || exit 1; done
	@test/tools/phase.sh --summary

matrix-one:
	@$(PHASE) "$(PHASE_PREFIX)Kubernetes binaries (kube-apiserver, etcd, kubectl)" test/tools/k8s-assets.sh
	@$(PHASE) "$(PHASE_PREFIX)go test" env KUBEBUILDER_ASSETS=$$(test/tools/k8s-assets.sh 2>/dev/null) go test -count=1 -timeout 30m ./...
	@$(MAKE) --no-print-directory e2e

e2e: ## The cluster suite (as root): a real node with kube-proxy, CoreDNS, cert-manager and trust-manager; the product installed with make images + make deploy; every scenario against its pods.
	@$(PHASE) "$(PHASE_PREFIX)node dependencies (containerd, runc, CNI, CoreDNS; kubelet, kube-proxy, scheduler, controller-manager)" test/tools/node-deps.sh
	@$(PHASE) "trust-manager (built from the module proxy)" test/tools/trust-manager.sh
	@$(PHASE) "build tools: buildkitd, buildctl (test/tools/buildkit, a module of its own), ko; curl from Debian" bash -c 'test/tools/buildtools.sh >/dev/null && CLIENTS_DEBIAN="curl:curl" CLIENTS_ONLY="curl buildah" test/tools/clients.sh >/dev/null'
	@$(PHASE) "$(PHASE_PREFIX)e2e: the product installed on the cluster test bed" env KUBEBUILDER_ASSETS=$$(test/tools/k8s-assets.sh 2>/dev/null) HARBOR_CONNECTOR_NODE_RUNTIME=$$(test/tools/node-deps.sh 2>/dev/null) HARBOR_CONNECTOR_BUILDTOOLS=$$(test/tools/buildtools.sh 2>/dev/null) go test -tags e2e -p 1 -count=1 -v -timeout 45m ./test/node/ ./test/e2e/

e2e-day2: ## Day 2 on the cluster test bed (root, ~6 min warm, not in make test): an earlier build upgraded with kustomize and with Helm; a proxy pod, the manager, Harbor lost; certificates and the robot rotated; GitOps diffs; uninstall.
	@$(PHASE) --reset
	@$(PHASE) "node dependencies" test/tools/node-deps.sh
	@$(PHASE) "trust-manager (built from the module proxy)" test/tools/trust-manager.sh
	@$(PHASE) "helm and gitops-drift (built from the module proxy)" bash -c "test/tools/helm.sh && test/tools/gitops.sh"
	@$(PHASE) "gitops-drift: Argo CD's and Flux's diff against a test webhook (test/tools/gitops)" bash -c 'cd test/tools/gitops && KUBEBUILDER_ASSETS=$$(../k8s-assets.sh 2>/dev/null) go test -count=1 ./...'
	@$(PHASE) "e2e-day2: upgrade, failures, rotation, GitOps, uninstall, Helm on the cluster test bed" env KUBEBUILDER_ASSETS=$$(test/tools/k8s-assets.sh 2>/dev/null) HARBOR_CONNECTOR_NODE_RUNTIME=$$(test/tools/node-deps.sh 2>/dev/null) go test -tags e2e,day2 -run '^TestDay2$$' -p 1 -count=1 -v -timeout 60m ./test/e2e/
	@test/tools/phase.sh --summary

e2e-tools: ## Only the build tool scenarios of make e2e (root, about 2 minutes warm): buildkit (forward, reverse, the seed recipes, a pipeline), ko, buildah, curl and a Go client of Harbor's REST API.
	@$(PHASE) --reset
	@$(PHASE) "node dependencies" test/tools/node-deps.sh
	@$(PHASE) "trust-manager (built from the module proxy)" test/tools/trust-manager.sh
	@$(PHASE) "build tools: buildkitd, buildctl (test/tools/buildkit, a module of its own), ko; curl from Debian" bash -c 'test/tools/buildtools.sh >/dev/null && CLIENTS_DEBIAN="curl:curl" CLIENTS_ONLY="curl buildah" test/tools/clients.sh >/dev/null'
	@$(PHASE) "e2e-tools: the build tools in Jobs on the cluster test bed" env KUBEBUILDER_ASSETS=$$(test/tools/k8s-assets.sh 2>/dev/null) HARBOR_CONNECTOR_NODE_RUNTIME=$$(test/tools/node-deps.sh 2>/dev/null) HARBOR_CONNECTOR_BUILDTOOLS=$$(test/tools/buildtools.sh 2>/dev/null) go test -tags e2e -run '^TestOnARealNode$$/^6_build_tools$$' -p 1 -count=1 -v -timeout 30m ./test/e2e/
	@test/tools/phase.sh --summary

alerts: ## Check config/prometheus/rules.yaml: Prometheus's rule parser, and every metric named is one the manager or the proxy registers (test/tools/promrules, its own module).
	go -C test/tools/promrules vet ./...
	go -C test/tools/promrules test -count=1 ./...

node-deps: ## Build containerd 2.x, runc (seccomp) and the CNI plugins into the cache, install busybox-static, build kubelet & co.
	@test/tools/node-deps.sh >/dev/null

bench: ## Benchmarks: each prints its figures side by side with its baseline, measured in one run; then bench-cluster (root).
	@CLIENTS_DEBIAN="nginx:nginx-light mitmdump:mitmproxy" test/tools/clients.sh >/dev/null
	@env KUBEBUILDER_ASSETS=$$(test/tools/k8s-assets.sh 2>/dev/null) go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...
	@$(MAKE) --no-print-directory bench-cluster

# make bench-scale: SCALE_NODES, SCALE_PODS, SCALE_NAMESPACES, SCALE_CONNECTORS size the API server
# (defaults 1000, 30000, 2000, 2000); SCALE_SAMPLES (2000), SCALE_RECONCILES (200) and SCALE_REST
# (30s) the measurements; SCALE_LOG_DIR keeps the two processes' logs. Not part of make bench:
# test/scale skips unless SCALE=1.
bench-scale: ## Scale: an envtest API server filled with Nodes, marked pods, namespaces and Connectors; the proxy and the manager as processes: sync, RSS (and per 10,000 pods), API requests at rest, decision latencies, each beside its goal (README "Performance").
	@env SCALE=1 KUBEBUILDER_ASSETS=$$(test/tools/k8s-assets.sh 2>/dev/null) go test ./test/scale -run '^$$' -bench Scale -benchtime 1x -timeout 60m

bench-cluster: ## Pod start on the cluster test bed (root): the node path against a direct pull with a pull secret, median of 3; and make deploy to all Ready.
	@$(PHASE) --reset
	@$(PHASE) "node dependencies" test/tools/node-deps.sh
	@$(PHASE) "trust-manager (built from the module proxy)" test/tools/trust-manager.sh
	@$(PHASE) "pod start on the cluster" env KUBEBUILDER_ASSETS=$$(test/tools/k8s-assets.sh 2>/dev/null) HARBOR_CONNECTOR_NODE_RUNTIME=$$(test/tools/node-deps.sh 2>/dev/null) go test -tags e2e -run '^$$' -bench PodStart -benchtime 1x -timeout 30m ./test/e2e/
	@test/tools/phase.sh --summary

fuzz: ## Fuzz the webhook's mutation and the proxy's path canonicaliser for a minute each (their seed corpora also run in make test).
	go test ./webhook -run '^$$' -fuzz FuzzPodMutation -fuzztime 60s
	go test ./policies -run '^$$' -fuzz FuzzCanonicalPath -fuzztime 60s

demo: ## Run the product end to end on an embedded API server and test Harbor.
	@echo "compiling the demo (first run: several minutes without output)..."
	@go run ./test/demo

# make deploy: KUBELET_ROOT when the nodes' kubelet root is not /var/lib/kubelet.
KUBELET_ROOT ?=
export KUBELET_ROOT

deploy: ## Apply the install to the current kubeconfig (cert-manager and trust-manager first: README "Install on a cluster"): the overlay make images REGISTRY=... wrote ($(OVERLAY)), else config/default.
	@test/tools/deploy.sh

# make undeploy: DELETE_CRD=true also deletes the Connector CRD and so every Connector; FORCE=true
# uninstalls although workloads the webhook mutated still run; WAIT=false does not wait for the
# namespaces to terminate (README "Uninstall").
DELETE_CRD ?=
FORCE ?=
WAIT ?=
export DELETE_CRD FORCE WAIT

undeploy: ## Remove the install from the current kubeconfig, except the Connector CRD (DELETE_CRD=true: it too); refuses while mutated workloads run (FORCE=true).
	@test/tools/undeploy.sh

# make chart and make install-file render what make deploy applies: $(OVERLAY) when make images
# REGISTRY=... wrote it, else config/default. Their generator is the module test/tools/helm
# (kustomize's Go API); its tests: cd test/tools/helm && go test ./...
INSTALL_SOURCE = $(if $(wildcard $(OVERLAY)/kustomization.yaml),$(OVERLAY),config/default)

chart: ## The Helm chart, generated from config/ ($(OVERLAY) if make images wrote it, else config/default) into bin/chart/harbor-connector: README "Install with Helm".
	go -C test/tools/helm run . -repo "$(CURDIR)" -config "$(INSTALL_SOURCE)" -chart $(BIN)/chart/harbor-connector

install-file: ## The install as one file, bin/harbor-connector.yaml, for kubectl apply --server-side -f: the kustomize render of $(OVERLAY) if make images wrote it, else config/default.
	go -C test/tools/helm run . -repo "$(CURDIR)" -config "$(INSTALL_SOURCE)" -install-file $(BIN)/harbor-connector.yaml

helm-adopt: ## Before the first helm upgrade over a make deploy install: hand kubectl's server-side-applied fields on the install's objects to helm's field manager (README "Install with Helm").
	go -C test/tools/helm run . -repo "$(CURDIR)" -config "$(INSTALL_SOURCE)" -adopt-fields-from kubectl

helm: ## Build the helm CLI (HELM_VERSION in test/tools/versions.env) from the module proxy into the cache and print its path.
	@test/tools/helm.sh
