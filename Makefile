# make search  set up (if needed), then the architecture search on the embedded defaults
#              (Curie, 15 KB RAM, MNIST; SQLite Optuna and MLflow stores under artifacts/)
# make test    set up (if needed), then run the default test suite
# make workers N=3 ARGS="storage=postgresql+psycopg2://... mlflow.tracking_uri=http://127.0.0.1:5000"
#              N search workers of one study on this machine, started together (README: Many workers);
#              output prefixed [worker i]; Ctrl-C stops them all cleanly; fails if any worker failed
PY := .venv/bin/python
N ?= 2

.PHONY: setup search train test test-slow bench workers
setup:
	@bash scripts/setup.sh

search: setup
	$(PY) -m pipeline search device=curie ram_kb=15 $(ARGS)

workers: setup
	@bash -c 'set -o pipefail; pids=(); \
	for i in $$(seq 1 $(N)); do \
	  ( $(PY) -m pipeline search $(ARGS) 2>&1 | (trap "" INT TERM; exec sed -u "s/^/[worker $$i] /") ) & pids+=($$!); \
	done; \
	rc=0; for p in "$${pids[@]}"; do wait $$p || rc=$$?; done; exit $$rc'

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
