# Strata: `make demo` and `make test` do everything on a fresh machine.
# Speed flags live here, never in Package.swift (a package with unsafeFlags cannot be a dependency).
SWIFT       ?= swift
# -O, with Swift's checks: -Ounchecked measured no faster (docs/robustness.md), and checks must not
# be what stands between hostile input and memory
RELEASE     := -c release
BIN         := .build/release/strata
APT_PKGS    := libopenblas-dev liblapacke-dev libedit-dev libopenmpi-dev openmpi-bin
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build test bench bench-quick bench-gemm bench-gemm-build bench-model bench-kernels demo clean fuzz

all: build

# Installs OpenBLAS, LAPACKE, libedit (strata chat's line editing) and Open MPI (pipeline stages across
# ranks: the library `Strata` builds without it, the CLI and the StrataMPI product need it) with apt-get
# only when missing (quick on a ready machine).
deps:
	@if pkg-config --exists openblas libedit ompi-c 2>/dev/null && [ -f /usr/include/lapacke.h ] && command -v mpirun >/dev/null; then :; else \
		echo "installing $(APT_PKGS)"; \
		$(SUDO) apt-get install -y -q $(APT_PKGS) >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $(APT_PKGS); }; \
	fi

build: deps
	$(SWIFT) build $(RELEASE) --product strata

test: deps
	$(SWIFT) test --skip EveryKernelPathTests
	$(SWIFT) test --skip-build --filter EveryKernelPathTests   # switches the global kernel path: a process of its own
	$(SWIFT) test -c release --filter AllocationTests   # allocation counts mean something only optimized
	$(SWIFT) build --product strata
	scripts/test-serve.sh                                 # strata serve against the official openai client (venv made here)
	python3 scripts/test_mpi.py .build/debug/strata       # pipeline stages under mpirun -np 2/3 (and two network namespaces): the single process's tokens
	python3 scripts/test_cli_hostile.py .build/debug/strata   # hostile flags and files: an error naming them, never a signal or a hang
	scripts/sanitize.sh address thread                    # the whole suite under ASan (+leaks) and TSan: any report fails

# make bench: every suite, results in bench-results/<timestamp>/ (results.json, summary.md, plots);
# make bench-quick: smaller presets, fewer repeats. BENCH_COMPARE=bench-results/<earlier> prints the change;
# BENCH_REPEATS=N runs plan and rule N times per RAM-budget configuration (default 3).
BENCH_ARGS := $(if $(BENCH_COMPARE),--compare $(BENCH_COMPARE),) $(if $(BENCH_REPEATS),--sweep-repeats $(BENCH_REPEATS),)

bench: build bench-gemm-build
	$(BIN) bench-suite $(BENCH_ARGS)
	$(MAKE) bench-kernels

bench-quick: build bench-gemm-build
	$(BIN) bench-suite --quick $(BENCH_ARGS)

bench-gemm-build: deps
	$(SWIFT) build $(RELEASE) --package-path Benchmarks --product gemm-compare

bench-gemm: deps
	$(SWIFT) build $(RELEASE) --package-path Benchmarks --product gemm-compare
	Benchmarks/.build/release/gemm-compare 7

# kernels (GEMM vs raw cblas_sgemm, attention, RMSNorm, softmax, f16/bf16 conversion, KV block copy)
bench-kernels: deps
	cd Benchmarks && $(SWIFT) package benchmark --no-progress

# The main job on a default that needs no download: synth a TinyLlama-1.1B-shaped bf16 model
# (2 GiB) three times larger than a 700 MiB RAM budget, print the plan, generate under it inside
# a memory cgroup (when one can be made), print measured vs predicted. About a minute here.
demo: build
	BIN=$(BIN) scripts/demo.sh

# llama-bench-like pp512/tg128 on TinyLlama-1.1B's shape (f32, random weights), beside the bounds.
BENCH_MODEL := .build/bench-models/tinyllama-1.1b-f32
bench-model: build
	@[ -f $(BENCH_MODEL)/model.safetensors ] || $(BIN) synth --preset tinyllama-1.1b --dtype f32 --out $(BENCH_MODEL)
	$(BIN) bench-model --model $(BENCH_MODEL) --prompt 512 --gen 128 --repeats 5 --threads 2

# libFuzzer over every parser of hostile input (Fuzz/, a nested package built with -sanitize=fuzzer):
# FUZZ_SECONDS per target (default 60); FUZZ_TARGETS to choose. Crashes land in .build/fuzz/<target>/.
FUZZ_SECONDS ?= 60
fuzz: deps
	$(SWIFT) build -c release --package-path Fuzz -Xswiftc -sanitize=fuzzer -Xswiftc -use-ld=lld
	scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf .build Benchmarks/.build Fuzz/.build
