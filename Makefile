# make train   set up (if needed), then train the default preset on the embedded defaults
# make test    set up (if needed), then run the default test suite
PY := .venv/bin/python

.PHONY: setup train test test-slow bench
setup:
	@bash scripts/setup.sh

train: setup
	$(PY) -m pipeline train $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow $(ARGS)

bench: setup
	$(PY) bench/bench_core.py
