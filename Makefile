# One-command set-up on a fresh machine (Python >= 3.11; CPU torch 2.13.0 pinned by constraints.txt).
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install test demo train-data clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

test: install
	$(BIN)/ruff check src tests scripts examples
	$(BIN)/pytest || [ $$? -eq 5 ]  # 5: no tests collected

# THREADS: torch CPU threads (default 1; 0 = every core), e.g. `make demo THREADS=4`
demo: install
	$(BIN)/ccdf demo --quick --out out/demo $(if $(THREADS),--threads $(THREADS))

# Only needed to retrain the embedded models (Debian data packages + the nilearn wheel).
train-data: install
	apt-get install -y dataset-fashion-mnist mricron-data
	$(BIN)/pip install -q -c constraints.txt -e '.[train]'

clean:
	rm -rf $(VENV) out
