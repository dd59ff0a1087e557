# make search  set up (if needed), then the architecture search on the embedded defaults
#              (Curie, 15 KB RAM, MNIST; SQLite Optuna and MLflow stores under artifacts/)
# make test    set up (if needed), then run the default test suite
PY := .venv/bin/python

.PHONY: setup search train test test-slow bench
setup:
	@bash scripts/setup.sh

search: setup
	$(PY) -m pipeline search device=curie ram_kb=15 $(ARGS)

train: setup
	$(PY) -m pipeline train $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow $(ARGS)

bench: setup
	$(PY) bench/bench_core.py
	$(PY) bench/bench_c.py
	$(PY) bench/bench_search.py
