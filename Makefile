# Two commands on a fresh machine:
#   make demo   create .venv, install neuro, run the default job (W2 network + Brian2 agreement)
#   make test   create .venv, install neuro with test extras, create .venv-lava, run the whole suite
#   make lava   create .venv-lava: Python 3.10 with lava-nc 0.10 and numpy<2 (the Loihi 2 runner's venv)
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out

.PHONY: demo test bench install clean lava

# Lava (lava-nc 0.10) needs Python 3.10 and numpy<2, so it lives in its own venv; the Loihi runner
# finds it through NEURO_LAVA_PYTHON or at $(LAVA_VENV)/bin/python.
PY310 ?= python3.10
LAVA_VENV ?= .venv-lava
LAVA_STAMP := $(LAVA_VENV)/.installed

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python pyproject.toml constraints.txt setup.py $(wildcard neuro/_native/*.c neuro/_native/*.h)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/neuro demo --out $(OUT)

$(LAVA_STAMP):
	@py=""; \
	if $(PY310) -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then py="$(PY310)"; \
	elif command -v pyenv >/dev/null 2>&1; then \
	  v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$$' | sort -t. -k3 -n | tail -1); \
	  if [ -n "$$v" ]; then py=$$(PYENV_VERSION=$$v pyenv which python3.10 2>/dev/null); fi; \
	fi; \
	if [ -z "$$py" ]; then echo "make lava: no Python 3.10 found (set PY310=/path/to/python3.10)" >&2; exit 1; fi; \
	echo "make lava: using $$py"; \
	$$py -m venv $(LAVA_VENV) && \
	$(LAVA_VENV)/bin/python -m pip install -q --upgrade pip && \
	$(LAVA_VENV)/bin/python -m pip install -q "lava-nc==0.10.*" "numpy<2" && \
	touch $(LAVA_STAMP)

lava: $(LAVA_STAMP)

test: $(STAMP) $(LAVA_STAMP)
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/neuro bench w1
	$(BIN)/neuro bench w2
	$(BIN)/neuro bench w3

clean:
	rm -rf $(VENV) $(LAVA_VENV) build *.egg-info $(OUT)
