# Two commands for a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRA ?= cpu

.PHONY: setup demo test unit integration clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	EXTRA=$(EXTRA) VENV=$(VENV) bash scripts/setup.sh
	touch $@

demo: setup
	$(VENV)/bin/s2ray run --config local-cpu

test: setup
	bash scripts/test.sh $(VENV)

unit: setup
	$(PY) -m pytest tests/unit -q

integration: setup
	$(PY) -m pytest tests/integration -q

clean:
	rm -rf $(VENV) .s2ray runs
