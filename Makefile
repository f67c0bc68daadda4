# Two commands on a fresh machine:
#   make demo   create .venv, install neuro, run the default job (W2 network + Brian2 agreement)
#   make test   create .venv, install neuro with test extras, run the whole suite
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out

.PHONY: demo test bench install clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/neuro bench w1
	$(BIN)/neuro bench w2
	$(BIN)/neuro bench w3

clean:
	rm -rf $(VENV) build *.egg-info $(OUT)
