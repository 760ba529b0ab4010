# Shortcuts; every target calls a script that also works without make.
PYTHON ?= python3

.PHONY: deploy test lint unit lab-up lab-down lab-verify bench lock

deploy:  ## Deploy the whole stack on this machine (all-in-one inventory)
	$(PYTHON) scripts/deploy.py

test:  ## Run every test: linters, unit tests, the Molecule lab
	$(PYTHON) scripts/test.py

lint:
	$(PYTHON) scripts/test.py lint

unit:
	$(PYTHON) scripts/test.py unit

lab-up:  ## Converge the lab and leave it running; writes .lab/env
	$(PYTHON) scripts/lab.py up

lab-verify:  ## Run the lab's tests against the running lab
	$(PYTHON) scripts/lab.py verify

lab-down:  ## Destroy the lab
	$(PYTHON) scripts/lab.py down

lock:  ## Regenerate the hash-pinned lock files from the .in files (needs uv)
	$(PYTHON) scripts/lock.py

bench:  ## Benchmark floor, LiteLLM as shipped and the gateway on the lab; writes bench/results
	$(PYTHON) scripts/bench.py
