# The commands CI runs (`make test`) and a newcomer's first steps (`make run`).
# One target/ and one release profile for build, test and benches, so
# wasmtime is compiled once.

CARGO ?= cargo
GUEST_TARGET := wasm32-unknown-unknown
QUOTA := target/release/quota

.PHONY: all toolchain pg-tools browser-tools build bin policy edge edge-test lint test conformance bench bench-http bench-swap fuzz-api run clean

all: build

# The guest target: the reference policy is built for it by a build script.
toolchain:
	rustup target add $(GUEST_TARGET)

build: toolchain
	$(CARGO) build --release --locked

# The PostgreSQL server binaries the tests start a throwaway cluster from
# (crates/throwaway-pg); installed from Debian's package when missing.
pg-tools:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# Headless Chromium and its WebDriver, for the dashboard's browser test
# (crates/cli/tests/dashboard.rs); installed from Debian's packages when missing.
browser-tools:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# The `quota` binary alone (what `make run` needs: no benchmark peers). It
# resolves the same features as `make test` (crates/workspace-hack, checked
# by `make test`), so after `make test` it compiles nothing again.
bin: toolchain
	$(CARGO) build --release --locked -p quota-cli

# The reference policy component on its own, for other hosts (jco, wasmtime CLI).
policy: toolchain
	$(CARGO) build --release --locked -p quota-reference-policy
	@echo "reference policy component: target/guest/reference-policy.wasm"

# The JavaScript package (edge/): its npm packages from the lockfile, and the
# reference policy transpiled with jco into edge/dist/reference
# (edge/README.md).
edge: policy
	cd edge && npm ci --no-audit --no-fund --loglevel=error
	node edge/build.mjs

# The package's types, and its Node tests: the conformance corpus, the
# differential runs against `quota policy eval` (which they run from
# target/release, as the hostile test policy from the Rust tests' build),
# and the Worker example in workerd (Miniflare).
edge-test: edge
	cd edge && npx tsc -p .
	cd edge && node --test test/*.test.mjs

lint: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked -p quota-policy --target $(GUEST_TARGET) -- -D warnings
	$(CARGO) clippy --locked -p quota-percent-grace-policy --target $(GUEST_TARGET) -- -D warnings
	$(CARGO) clippy --locked -p quota-floor-policy --target $(GUEST_TARGET) -- -D warnings

# The conformance corpus through the real binary and the built-in component;
# the example policy's own cases through its component.
conformance: build
	$(QUOTA) policy test $(CASES)
	$(QUOTA) policy test --module $(PERCENT_GRACE) $(PERCENT_GRACE_CASES)

CASES := tests/conformance/*.json examples/cases.json
# The percent-grace example policy (examples/percent-grace), written by the
# build script of crates/example-policies.
PERCENT_GRACE := target/guest/percent-grace.wasm
PERCENT_GRACE_CASES := examples/percent-grace/cases.json

# `cargo test` builds target/release/quota itself (the CLI's tests run it), with
# the same features as the tests, so wasmtime is compiled once for both. The
# tests that need PostgreSQL start a throwaway cluster of their own; the
# browser test starts chromedriver, and must not skip here.
test: lint pg-tools browser-tools
	QUOTA_BROWSER_TESTS=require $(CARGO) test --release --locked --workspace
	scripts/check-bin-reuse.sh
	$(MAKE) edge-test
	$(CARGO) bench --locked --workspace --no-run
	scripts/fuzz-api.sh $(QUOTA)
	$(QUOTA) policy test $(CASES)
	$(QUOTA) policy test --module $(PERCENT_GRACE) $(PERCENT_GRACE_CASES)

# Load test on loopback with wrk: guarded creates beside /healthz (BENCHMARKS.md).
bench-http: build
	scripts/bench-http.sh $(QUOTA) 10 32

# Policy swaps under load: guarded creates steady, then while the reference and
# percent-grace components are uploaded alternately every 250 ms (BENCHMARKS.md).
bench-swap: build
	scripts/bench-swap.sh $(QUOTA) 10 32

# PostgreSQL beside SQLite over HTTP (one host, two hosts), many users and one
# hot user, and pgbench running the same transaction: 5 rounds of 8 s per load,
# 32 connections, 1,000 users, about 12 minutes (BENCHMARKS.md). A throwaway
# cluster, removed after.
.PHONY: bench-pg bench-pg-growth
bench-pg: bin pg-tools
	scripts/bench-pg.sh $(QUOTA) 8 32 5 1000

# A guarded create on empty databases beside ones with 1,000,000 users and
# 10,000,000 drafts, both backends, 5 rounds: about 8 minutes (BENCHMARKS.md).
# Needs about 10 GB of free disk while it runs; everything is removed after.
bench-pg-growth: bin pg-tools
	scripts/bench-pg-growth.sh $(QUOTA) 8 5 1000000 10 "1 32"

# The policy in Node beside native Rust and wasmtime, on the decision
# benchmark's inputs (BENCHMARKS.md, "The policy in Node").
.PHONY: bench-edge bench-lease
bench-edge: edge
	scripts/bench-edge.sh 5

# Decisions from a lease in Node beside direct consumes over loopback, one
# `quota serve` on SQLite, and the round trips per 1,000 units
# (BENCHMARKS.md, "Decisions at the edge").
bench-lease: edge bin
	node edge/bench-lease.mjs 5

# Schemathesis (from PyPI, in target/fuzz-venv) against the OpenAPI document: no 5xx.
fuzz-api: build
	scripts/fuzz-api.sh $(QUOTA) 200

# Criterion benchmarks, side by side in one run; figures go to BENCHMARKS.md.
bench: toolchain
	$(CARGO) bench --locked -p quota-benches --benches

# The service on an embedded database under ./var with the reference policy
# and demo plans; the admin token is written to var/admin-token.
run: bin
	$(QUOTA) serve --db var/quota.db --demo

clean:
	$(CARGO) clean
