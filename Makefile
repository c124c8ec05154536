# The two commands of the README. Each creates the virtual environment when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned to the builds that lie on this kind of machine's disk.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint venv data clean

$(BIN)/genae: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/genae

# Fashion-MNIST from Debian's package when it is missing and apt is usable; genae falls back to
# its embedded digits dataset otherwise.
data:
	@test -d /usr/share/datasets/fashion-mnist || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)); } || \
	  echo "note: Fashion-MNIST not installed; the demo will use the embedded digits dataset"

demo: venv data
	$(BIN)/genae demo --out demo-out

test: venv data
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts

clean:
	rm -rf demo-out runs .pytest_cache
