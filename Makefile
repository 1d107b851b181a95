# speechinstruct: `make setup`, then `make dataset LANG=en`; `make test` runs the tests.
SHELL := /bin/bash
PY_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
WHEELS := $(HOME)/.cache/speechinstruct/wheels
LLAMA_CPP_VERSION := 0.3.36
# llama.cpp's CPU kernels are built for the instruction sets this CPU has (AVX-512/VNNI where present); the wheel is
# cached per set, so a cache shared by different machines never hands one a wheel its CPU cannot run
LLAMA_CPU_ARGS := $(shell sh scripts/llama_cpu_flags.sh)
LLAMA_CPU_TAG := $(shell sh scripts/llama_cpu_flags.sh --tag)
LLAMA_WHEELS := $(WHEELS)/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(LLAMA_CPU_TAG)
# llama.cpp's llama-server (the embedded LLM engine llm.backend llama-cpp), built from the same sdist's vendor/llama.cpp
LLAMA_SERVER := $(HOME)/.cache/speechinstruct/bin/llama-server-$(LLAMA_CPP_VERSION)
PROFILES := $(sort $(basename $(notdir $(wildcard config/profiles/*.yaml))))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: setup system-deps dataset tts train serve test bench bench-train clean help
.PHONY: plan profile

help:
	@echo "make setup                  system packages, venv, pinned CPU deps, embedded models"
	@echo "make dataset LANG=<profile> build the dataset (profiles: $(PROFILES))"
	@echo "make plan LANG=<profile>    what a dataset run would do (files, hours, done shards, models, time); ARGS=\"--input X\""
	@echo "make profile NAME=<name> LANG=<profile>   write <name>.yaml, your own profile to edit (--profile <name>.yaml)"
	@echo "make tts LANG=<profile>     speak the profile's text instruction corpus only"
	@echo "make train LANG=<profile>   train + score a small speech LM on data/<LANG>"
	@echo "make serve                  local Prefect server + work pool + deployments + worker (loopback)"
	@echo "make test                   import contract (lint-imports) + the tests"
	@echo "make bench                  benchmarks (bench/*.py)"
	@echo "make bench-train            speech-LM benchmark: corpus from the TTS backends, train, score (bench/results/bench_train.md)"

setup: system-deps $(VENV)/.installed $(VENV)/.llama-cpp-$(LLAMA_CPU_TAG) $(LLAMA_SERVER)
	$(PY) -m pipeline models assemble

system-deps:
	@missing=""; for b in ffmpeg espeak-ng; do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	 dpkg -s libsndfile1 >/dev/null 2>&1 || missing="$$missing libsndfile1"; \
	 if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	   $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends ffmpeg libsndfile1 espeak-ng >/dev/null; fi

# The llama.cpp binding has no binary wheel on the registry: build it once (~4 min on 2 cores), keep the wheel.
$(LLAMA_WHEELS)/.built:
	mkdir -p $(LLAMA_WHEELS)
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMA_CPU_ARGS) -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF" \
	  $(PIP) wheel --no-deps --no-cache-dir -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

# that wheel in the venv (again when the CPU's instruction sets, hence the wheel, change)
$(VENV)/.llama-cpp-$(LLAMA_CPU_TAG): $(LLAMA_WHEELS)/.built | $(VENV)/.installed
	$(PIP) install -q --no-deps --force-reinstall --no-index --find-links $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	rm -f $(VENV)/.llama-cpp-*
	touch $@

# llama-server from the llama.cpp sources inside the llama-cpp-python sdist (~7 min CPU on 2 cores), built once and
# cached as one static binary; the sdist comes from pip's cache or PyPI. Loopback only, no web UI, no curl/openssl.
$(LLAMA_SERVER): | $(VENV)/bin/python
	@command -v cmake >/dev/null && command -v c++ >/dev/null || { echo "installing Debian packages: cmake g++ (to build llama-server)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends cmake g++ make >/dev/null; }
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(PIP) download -q --no-binary :all: --no-deps -d "$$tmp" llama-cpp-python==$(LLAMA_CPP_VERSION); \
	  tar xzf "$$tmp"/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C "$$tmp"; \
	  src="$$tmp/llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp"; \
	  cmake -S "$$src" -B "$$tmp/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
	    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
	    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >"$$tmp/cmake.log" 2>&1 \
	    || { tail -40 "$$tmp/cmake.log" >&2; exit 1; }; \
	  cmake --build "$$tmp/build" --target llama-server -j$$(nproc) >"$$tmp/build.log" 2>&1 || { tail -40 "$$tmp/build.log" >&2; exit 1; }; \
	  "$$tmp/build/bin/llama-server" --version >/dev/null 2>&1; \
	  mkdir -p $(dir $(LLAMA_SERVER)); cp "$$tmp/build/bin/llama-server" $@.tmp; mv $@.tmp $@
	@echo "built $(LLAMA_SERVER)"

$(VENV)/bin/python:
	$(PY_SYS) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python requirements/base.txt requirements/constraints.txt requirements/nodeps.txt pyproject.toml | $(LLAMA_WHEELS)/.built
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements/base.txt -c requirements/constraints.txt
	$(PIP) install -q --no-deps -r requirements/nodeps.txt
	# the registry's torchaudio 2.11 is a CUDA build: without its .so files it runs in pure-Python mode on CPU
	rm -f $(VENV)/lib/python*/site-packages/torchaudio/lib/*.so
	$(PIP) install -q --no-deps --no-index --find-links $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install -q --no-deps -e .
	$(PY) -c "import torch, torchaudio, llama_cpp, faster_whisper, whisper, piper, prefect, datasets, transformers, speechbrain, pyannote.audio; assert torch.__version__.startswith('2.13.0') and '+cpu' in torch.__version__, torch.__version__"
	touch $@

$(LLAMA_WHEELS)/.built: | $(VENV)/bin/python

# LANG is also the locale variable (e.g. C.UTF-8): only a LANG given on the command line counts.
dataset: check-lang
	$(PY) -m pipeline dataset --lang $(LANG) $(ARGS)

check-lang:
	@if [ "$(origin LANG)" != "command line" ]; then \
	  echo "error: say which language profile: LANG=<profile>, one of: $(PROFILES)" >&2; \
	  echo "       (LANG='$(LANG)' from the environment is the locale, not a profile)" >&2; exit 2; fi
	@if ! echo " $(PROFILES) " | grep -q " $(LANG) "; then \
	  echo "error: unknown language profile LANG=$(LANG); known profiles: $(PROFILES) (config/profiles/*.yaml)" >&2; exit 2; fi

# the plan of a run without running it: `make plan LANG=en ARGS="--input /corpora/my_audio"`
plan: check-lang
	$(PY) -m pipeline plan --lang $(LANG) $(ARGS)

# a profile of your own, copied from LANG with its comments: `make profile NAME=mine LANG=en ARGS="--input /corpora/x"`
profile: check-lang
	@if [ -z "$(NAME)" ]; then echo "error: say the new profile's name: make profile NAME=<name> LANG=<profile>" >&2; exit 2; fi
	$(PY) -m pipeline profile new $(NAME) --from $(LANG) $(ARGS)

tts: check-lang
	$(PY) -m pipeline tts --lang $(LANG) $(ARGS)

train: check-lang
	$(PY) -m pipeline train --lang $(LANG) $(ARGS)

serve:
	PY=$(PY) scripts/serve.sh

test:
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench:
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

bench-train:
	$(PY) bench/bench_train.py $(ARGS)

clean:
	rm -rf data build .pytest_cache
