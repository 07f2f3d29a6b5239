# ferrogate — the commands a newcomer, a developer and CI use. `make` alone lists them.
#
# Two commands get a fresh Debian machine from clone to a tested, serving gateway:
#   make run    install what is missing, build release, serve both embedded models on 127.0.0.1:8080
#   make test   install what is missing, run every test (Rust via nextest, openai-SDK via pytest)
# Each target calls scripts/setup.sh first; it is idempotent and takes well under 2 s when
# everything is present. Models are cached in $(FERROGATE_MODEL_DIR), outside git and target/.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# rustup puts cargo in ~/.cargo/bin, which non-login shells (and CI) may not have on PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
# One model cache for fetch-models.sh, the server's relative model paths and the tests.
export FERROGATE_MODEL_DIR ?= $(HOME)/.cache/ferrogate/models

CARGO ?= cargo
CONFIG ?= config/ferrogate.toml
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# The debug binary (SDK tests, check-config) is built with the same target selection as nextest's
# test build, so both resolve the same dependency features and share one build. A plain
# `cargo build -p ferrogate` resolves features differently (no dev-dependencies) and would build
# llama.cpp a second time: ~18 min on 2 cores.
DEBUG_BUILD := $(CARGO) build --workspace --all-targets
# Extra arguments, e.g. `make test NEXTEST_ARGS='-E test(sse)' PYTEST_ARGS='-k stream'`.
NEXTEST_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help setup run build build-release build-portable build-pgo install check-cpu test test-rust test-sdk \
	lint fmt check-config check-deploy fetch-models bench-overhead bench-engine bench-limits bench-portable \
	bench-batch bench-reload image-local bench-embed fuzz bench-soak bench-streams bench-conversation bench-routing bench-ab \
	bench-instructions

help: ## list the targets (default)
	@printf 'ferrogate — make targets:\n\n'
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  \033[1m%-15s\033[0m %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@printf '\nVariables: CONFIG=%s  FERROGATE_MODEL_DIR=%s\n' '$(CONFIG)' '$(FERROGATE_MODEL_DIR)'

# === set-up ===

setup: ## install build deps, cargo-nextest and the models (idempotent)
	@scripts/setup.sh

fetch-models: ## download the GGUF models (SmolLM2, Gemma 3, all-MiniLM-L6-v2) into FERROGATE_MODEL_DIR
	@scripts/fetch-models.sh

# === build and run ===

build: ## debug build of the ferrogate binary (the one the SDK tests use) and of the tests
	$(DEBUG_BUILD)

build-release: ## release build of the ferrogate binary
	$(CARGO) build --release -p ferrogate

build-portable: ## one binary for any x86-64-v2+ CPU (images, packages): target/portable/dist/ferrogate/
	@scripts/setup.sh --no-models
	scripts/build-portable.sh

build-pgo: ## release build optimized by a profile of the gateway's own benchmark: target/pgo/ferrogate (~30 min cold)
	@scripts/setup.sh --no-models --bench
	scripts/build-pgo.sh

check-cpu: build ## the debug binary has no AMX code and llama.cpp's level fits this CPU
	scripts/check-cpu-build.sh $(TARGET_DIR)/debug/ferrogate

install: ## put the ferrogate binary on the PATH (cargo install --path crates/ferrogate, into ~/.cargo/bin)
	@scripts/setup.sh --no-models
	$(CARGO) install --locked --path crates/ferrogate --target-dir $(TARGET_DIR)

run: setup build-release ## serve smollm2 + gemma3 on 127.0.0.1:8080 (config/ferrogate.toml)
	exec $(TARGET_DIR)/release/ferrogate serve --config $(CONFIG)

check-config: setup build ## validate CONFIG (default config/ferrogate.toml), listing every error
	$(TARGET_DIR)/debug/ferrogate config check $(CONFIG)

# === tests ===

# `make test` runs both suites even when the first fails, so both summaries always print, and
# fails if either failed. The SDK tests use the debug binary, so they share one build with nextest.
test: ## set up, then run every test: the CPU-build check, deploy artifacts, Rust (nextest), the openai-SDK suite (pytest)
	@scripts/setup.sh --test
	@rc=0; \
	$(call run_cpu_check) || rc=1; \
	$(call run_deploy_check) || rc=1; \
	$(call run_nextest) || rc=1; \
	$(call run_sdk) || rc=1; \
	if [ "$$rc" -ne 0 ]; then echo "make test: FAILED (see the summaries above)" >&2; fi; \
	exit "$$rc"

check-deploy: ## validate Dockerfile, compose, Kubernetes, Caddy, systemd (hadolint, checkov, kubernetes-validate, ...)
	@$(call run_deploy_check)

test-rust: ## only the Rust tests (cargo nextest, dev profile)
	@scripts/setup.sh
	@$(call run_nextest)

test-sdk: ## only the openai-SDK tests in tests/sdk (builds the debug binary first)
	@scripts/setup.sh --test
	@$(call run_sdk)

# The binary nextest and the SDK tests use must run on this machine: no AMX instructions (they
# SIGILL in llama.cpp on Sapphire Rapids) and llama.cpp built for this CPU's level.
define run_cpu_check
{ echo "==> CPU build check (scripts/check-cpu-build.sh)"; \
  $(DEBUG_BUILD) && scripts/check-cpu-build.sh $(TARGET_DIR)/debug/ferrogate; }
endef

# The deployment artifacts (Dockerfile, deploy/): linters and schema validators, installed once
# into ~/.cache/ferrogate/deploy-tools, each proven able to fail by a self-test first. Runs after
# the CPU check, which builds the debug binary: `ferrogate config check` then checks the
# container, compose and Kubernetes configs too. Before nextest, so the test runners' summaries
# stay the closing lines of `make test` (.ci/run).
define run_deploy_check
{ echo "==> deploy artifacts (scripts/check-deploy.sh)"; \
  FERROGATE_BIN="$${FERROGATE_BIN:-$(abspath $(TARGET_DIR))/debug/ferrogate}" scripts/check-deploy.sh; }
endef

# llama.cpp itself is optimized even in the dev profile (workspace profile overrides).
define run_nextest
{ echo "==> cargo nextest run --workspace"; \
  $(CARGO) nextest run --workspace --no-fail-fast $(NEXTEST_ARGS); }
endef

# pytest exits 5 when it collects nothing. Until tests/sdk holds test files that is expected, so
# pytest is not started at all (a clear message instead of a run that tests nothing); once test
# files exist, collecting nothing is a failure like any other.
define run_sdk
{ echo "==> openai-SDK tests (tests/sdk)"; \
  if ! compgen -G 'tests/sdk/test_*.py' >/dev/null && ! compgen -G 'tests/sdk/*_test.py' >/dev/null; then \
    echo "tests/sdk: no test files yet; SDK suite skipped"; \
  else \
    $(DEBUG_BUILD) && \
    FERROGATE_BIN="$${FERROGATE_BIN:-$(abspath $(TARGET_DIR))/debug/ferrogate}" \
      .venv/bin/pytest -q tests/sdk $(PYTEST_ARGS); \
  fi; }
endef

# === quality ===

lint: ## rustfmt --check, clippy -D warnings on all targets (and shellcheck, if installed)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if command -v shellcheck >/dev/null; then \
	  echo "shellcheck scripts/*.sh .ci/run"; shellcheck -x scripts/*.sh .ci/run; \
	else echo "shellcheck not installed; shell scripts not linted"; fi

fmt: ## format the Rust code
	$(CARGO) fmt --all

# cargo-fuzz needs a nightly toolchain, which this project does not use (docs/SECURITY.md): the
# proptest targets stand in for it. `make test` runs them short (each property's own default);
# this runs them long, optimized (Cargo profile `fuzz`: release with debug assertions and overflow
# checks). FUZZ_CASES per property.
FUZZ_CASES ?= 100000
fuzz: ## the property tests of the request, SSE/NDJSON decoders and converters, FUZZ_CASES (100k) cases each
	@scripts/setup.sh --no-models
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) nextest run -p ferrogate-protocol --cargo-profile fuzz \
	  -E 'binary(/_prop$$/)' --no-fail-fast

# === benchmarks (results go to bench-results/, gitignored) ===

bench-overhead: ## gateway overhead vs direct: nginx static upstream, oha load, c=1/16/64
	@scripts/setup.sh --bench --no-models
	scripts/bench-overhead.sh

bench-ab: ## A/B of two gateway builds, interleaved on one CPU: make bench-ab A=old-binary B=new-binary
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make bench-ab A=<ferrogate binary> B=<ferrogate binary>" >&2; exit 2; }
	@scripts/setup.sh --bench --no-models
	scripts/bench-ab.sh "$(A)" "$(B)"

bench-instructions: ## instructions per request under callgrind, gateway vs nginx's proxy (exact, noise-free)
	@scripts/setup.sh --bench --no-models
	scripts/bench-instructions.sh --annotate

bench-limits: ## rate limits: check cost (in process, Redis) and a 429's latency with the backend saturated
	@scripts/setup.sh --bench --no-models
	scripts/bench-limits.sh

bench-engine: ## embedded engine throughput vs llama.cpp's llama-server
	@scripts/setup.sh --bench
	@test -x scripts/bench-engine.sh || { echo "scripts/bench-engine.sh is not there yet" >&2; exit 1; }
	scripts/bench-engine.sh

bench-embed: ## embeddings/s at batch 1 and 32: the embedded MiniLM vs llama-server --embedding
	@scripts/setup.sh --bench
	@scripts/fetch-models.sh minilm
	scripts/bench-embed.sh

bench-soak: ## 2,000 concurrent SSE streams (RSS, CPU; nginx side by side), then a SOAK_MINUTES (30) soak with the RSS slope
	@scripts/setup.sh --bench --no-models
	scripts/bench-soak.sh

bench-streams: ## 10,000 SSE streams held at once to a 100 ms drip: every frame on time? RSS, CPU (nginx side by side)
	@scripts/setup.sh --bench --no-models
	scripts/bench-streams.sh

bench-portable: ## the portable build's engine speed against the native build's (both demo models)
	@scripts/setup.sh --bench
	scripts/bench-portable.sh

bench-batch: build-release ## interactive TTFT p50/p99 alone and beside a 1,000-line batch (embedded SmolLM2)
	@scripts/setup.sh --bench
	scripts/bench-batch.sh

bench-reload: ## reload under load: failed requests and p50/p99 with a SIGHUP every 250 ms vs none (nginx upstream)
	@scripts/setup.sh --bench --no-models
	scripts/bench-reload.sh

image-local: build-release ## container image without a registry: debootstrap base + podman, host-built binary, smoke test
	scripts/build-image-local.sh

bench-conversation: ## TTFT per turn of a stored conversation (embedded engine) vs full history to llama-server
	@scripts/setup.sh --bench
	scripts/build-llama-server.sh >/dev/null
	scripts/bench-conversation.sh

bench-routing: build-release ## p50/p90 TTFT and tokens/s: prefix-affinity routing vs P2C vs round robin, two llama-servers
	@scripts/setup.sh --bench
	scripts/build-llama-server.sh >/dev/null
	scripts/bench-routing.sh
