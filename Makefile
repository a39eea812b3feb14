# gridserver — the two commands: `make demo` and `make test` (both run `make setup` first).
.PHONY: setup demo test serve bench clean help
.DEFAULT_GOAL := help

VENV := .venv/bin

help:
	@echo "make demo   set up, build the demo city (Yuexiu) into the embedded PostGIS and serve http://127.0.0.1:8000/map"
	@echo "make test   set up and run the whole test suite"
	@echo "make setup  install Debian packages (as root), .venv and front-end assets (idempotent)"
	@echo "make bench  run the benchmarks in bench/"

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/gridserver demo --serve

test: setup
	$(VENV)/pytest -q

serve: setup
	$(VENV)/gridserver serve

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(VENV)/python $$b || exit 1; done

clean:
	-$(VENV)/gridserver db stop
	rm -rf .gridserver gis_data/demo gridserver/maps/static/dist
