# gridserver — the two commands: `make demo` and `make test` (both run `make setup` first).
.PHONY: setup demo test serve bench clean help lock
.DEFAULT_GOAL := help

VENV := .venv/bin

help:
	@echo "make demo   set up, build the demo city (Yuexiu) into the embedded PostGIS and serve http://127.0.0.1:8000/map"
	@echo "make test   set up and run the whole test suite"
	@echo "make setup  install Debian packages (as root), .venv and front-end assets (idempotent)"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make lock   re-pin requirements.lock to the versions in .venv (after a dependency change)"

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/gridserver demo --serve

test: setup
	$(VENV)/pytest -q

serve: setup
	$(VENV)/gridserver serve

# Every bench runs (a failure does not stop the others); each one's final JSON line is collected in
# bench/results/latest.jsonl (git-ignored). DATABASE_URL, when set, names the server to bench on.
bench: setup
	@mkdir -p bench/results; : > bench/results/latest.jsonl; failed=""; \
	for b in bench/*.py; do \
	  [ "$$b" = bench/common.py ] && continue; echo "== $$b"; \
	  ( $(VENV)/python $$b; echo $$? > bench/results/.rc ) 2>&1 | tee bench/results/.out; \
	  if [ "$$(cat bench/results/.rc)" = 0 ]; then grep '^{' bench/results/.out | tail -n 1 >> bench/results/latest.jsonl; \
	  else failed="$$failed $$b"; fi; \
	done; rm -f bench/results/.rc bench/results/.out; \
	echo "== final JSON lines: bench/results/latest.jsonl"; cat bench/results/latest.jsonl; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi

lock:
	@{ echo "# Exact versions the test suite last passed with (pip constraints: scripts/setup.sh installs with -c)."; \
	   echo "# Regenerate after changing dependencies in pyproject.toml: make lock"; \
	   $(VENV)/pip freeze --exclude-editable | sed "s/+cpu$$//"; } > requirements.lock

clean:
	-$(VENV)/gridserver db stop
	rm -rf .gridserver gis_data/demo gridserver/maps/static/dist
