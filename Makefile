# RetailModel: `make demo` runs the whole story locally, `make test` runs every check.
# Everything installs itself: uv (in a cache outside the repo), the locked venv, and the
# Go-built local control plane (cached by version under $(CACHE)).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# One cache root for make and retailctl: RETAILMODEL_CACHE names it for both.
export RETAILMODEL_CACHE ?= $(HOME)/.cache/retailmodel
CACHE := $(RETAILMODEL_CACHE)
UV_VERSION := 0.13.8
UV := $(CACHE)/uv-$(UV_VERSION)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Delivery linters built from the Go module proxy into the cache, keyed by version.
ACTIONLINT_VERSION := v1.7.12
KUSTOMIZE_VERSION := v5.7.1
# cosign, only for the tests that prove image signatures are cosign's (both ways); the same
# version as retail_tools.images.signing.COSIGN_VERSION.
COSIGN_VERSION := v2.6.5
COSIGN := $(CACHE)/tools/cosign-$(COSIGN_VERSION)/cosign
ACTIONLINT := $(CACHE)/tools/actionlint-$(ACTIONLINT_VERSION)/actionlint
export KUSTOMIZE := $(CACHE)/tools/kustomize-$(KUSTOMIZE_VERSION)/kustomize

# Debian packages the machine needs beyond Go and Python, installed only when missing (one
# `apt-get update` first, then): the real node's runtime (containerd, runc, CNI plugins), its
# firewall and conntrack tools and a static C toolchain for its pause image; and what builds and
# runs the images; and Argo CD's cache (redis) and git, which its repo-server clones with.
NODE_PACKAGES := containerd runc containernetworking-plugins iptables conntrack gcc libc6-dev
IMAGE_PACKAGES := podman buildah debootstrap
ARGOCD_PACKAGES := redis-server git
HOST_PACKAGES := $(NODE_PACKAGES) $(IMAGE_PACKAGES) $(ARGOCD_PACKAGES)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help venv lint audit typecheck unit host-packages controlplane argocd images test \
	test-prerequisites test-cluster test-local soak demo demo-prerequisites clean bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(CACHE)/uv-$(UV_VERSION)
	$(CACHE)/uv-$(UV_VERSION)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-extras
	touch $@

venv: $(VENV)/.synced ## create the locked virtualenv

# Pure Go, built without cgo: side by side with host-packages, gcc may be installed before the
# C library's headers are.
$(ACTIONLINT):
	CGO_ENABLED=0 GOBIN=$(dir $@) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

$(KUSTOMIZE):
	CGO_ENABLED=0 GOBIN=$(dir $@) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

$(COSIGN):
	CGO_ENABLED=0 GOBIN=$(dir $@) go install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION)

lint: venv audit $(ACTIONLINT) $(KUSTOMIZE) ## ruff, ruff format, import contracts, hadolint, shellcheck, actionlint, kustomize, audit
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile.serving Dockerfile.operator
	$(BIN)/shellcheck scripts/*.sh
	$(ACTIONLINT) .github/workflows/*.yaml
	for overlay in deploy/overlays/*/; do $(KUSTOMIZE) build "$$overlay" >/dev/null; done

# Vulnerability IDs ignored on purpose; each one's reason is written in docs/RELIABILITY.md.
AUDIT_IGNORE :=
# --strict also fails when a package could not be audited (where PyPI's per-version JSON API,
# pip-audit's vulnerability source, is reachable; see docs/RELIABILITY.md).
AUDIT_FLAGS ?=

audit: venv ## pip-audit: a known vulnerability in any locked dependency fails the build
	$(UV) export --locked --no-hashes --no-emit-project --all-groups --quiet \
		--output-file $(VENV)/audit-requirements.txt
	$(BIN)/pip-audit --disable-pip --no-deps --progress-spinner off \
		--requirement $(VENV)/audit-requirements.txt $(AUDIT_FLAGS) \
		$(addprefix --ignore-vuln ,$(AUDIT_IGNORE))

typecheck: venv ## mypy --strict
	$(BIN)/mypy

unit: venv $(KUSTOMIZE) argocd ## unit tests only (no cluster, no AWS stand-in; Argo CD's engine judges the health check)
	$(BIN)/pytest tests/unit

host-packages: ## install the Debian packages the real node and the images need (only missing ones)
	@missing="$$(for package in $(HOST_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' "$$package" 2>/dev/null | grep -q '^install ok installed$$' \
			|| echo "$$package"; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

controlplane: venv host-packages ## build (or reuse, cached by version) etcd, Kubernetes, kubelet and kwok from the Go proxy
	$(BIN)/retailctl cluster build

# Argo CD's repo-server runs $(KUSTOMIZE) (so synced overlays build as `make lint` builds them).
argocd: venv host-packages $(KUSTOMIZE) ## build (or reuse, cached by version) Argo CD's binary from the Go proxy
	$(BIN)/retailctl argocd build

images: venv host-packages ## build both images with podman (cached), and crane for the local registry
	$(BIN)/retailctl image registry build
	$(BIN)/retailctl image build serving
	$(BIN)/retailctl image build operator

test: ## every check: lint, types and the whole test suite
	$(MAKE) --no-print-directory --jobs=4 test-prerequisites
	$(MAKE) --no-print-directory --jobs=2 test-cluster test-local

# The suite runs as two pytest processes side by side, the split by marker: the tests on the
# control plane and the real node (marked cluster or realnode), which mostly wait on pods and
# the API server, and the rest (unit, serving, images, delivery), which keep a core busy for a
# few minutes. One after the other they took 27 min 48 s of a 50 min cold `make test`. The rest
# writes to build/test-local.log, so the two reports do not interleave: its summary is shown
# when it passes, all of it when it fails. Either failing fails `make test`.
CLUSTER_TESTS := not soak and (cluster or realnode)
LOCAL_TESTS := not soak and not (cluster or realnode)
LOCAL_LOG := build/test-local.log

test-cluster: venv ## make test's half on the control plane and the real node (its prerequisites made)
	$(BIN)/pytest -m "$(CLUSTER_TESTS)" --durations=25

test-local: venv ## make test's other half: unit, serving, images, delivery (its prerequisites made)
	@mkdir -p $(dir $(LOCAL_LOG))
	@echo "pytest -m \"$(LOCAL_TESTS)\": running beside the cluster's tests, into $(LOCAL_LOG)"
	@if $(BIN)/pytest -m "$(LOCAL_TESTS)" -p no:cacheprovider --durations=10 >$(LOCAL_LOG) 2>&1; \
	then sed -n '/slowest 10 durations/,$$p' $(LOCAL_LOG); \
	else cat $(LOCAL_LOG); echo "pytest -m \"$(LOCAL_TESTS)\" failed (above)"; exit 1; fi

# What the suite needs, made side by side. Output is not synced: make's sync holds a command's
# output until it ends, and the control plane's build (about 18 minutes on a new machine) would
# show no progress.
test-prerequisites: lint typecheck controlplane argocd images $(COSIGN)

soak: venv ## minutes of load, reloads and S3 faults on one predictor (SOAK_SECONDS, default 300)
	$(BIN)/pytest -m soak -s tests/integration/serving

demo: ## the whole story on real pods (images, Argo CD syncing the operator and the RetailModel from git, reload, refusal, revert, rollout, canary)
	$(MAKE) --no-print-directory --jobs=4 demo-prerequisites
	$(BIN)/retailctl demo

demo-prerequisites: venv controlplane argocd images $(KUSTOMIZE)

bench: venv controlplane images $(KUSTOMIZE) ## side-by-side benchmarks (about 40 min) → bench/RESULTS.md and charts
	$(BIN)/python -m bench.serving
	$(BIN)/python -m bench.operator_scale
	$(BIN)/retailctl cluster up
	$(BIN)/python -m bench.real_path
	$(BIN)/python -m bench.report

clean: ## remove the venv, the caches and build/ inside the repo (not the control-plane cache)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build
