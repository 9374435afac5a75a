# Two commands matter: `make run` and `make test`. Both work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
INFRA := scripts/infra.sh
ENV := set -a; eval "$$($(INFRA) env)"; set +a;

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: ## uv and the locked Python dependencies
	@scripts/bootstrap.sh

infra: ## install (if missing) and start RabbitMQ and PostgreSQL on loopback
	@$(INFRA) up

infra-down: ## stop RabbitMQ and PostgreSQL
	@$(INFRA) down

migrate: install infra ## apply the SQL migrations
	@$(ENV) .venv/bin/tistis migrate

seed: migrate ## load the demo tenant esva-dental
	@$(ENV) .venv/bin/tistis seed-demo

run: seed ## everything: infra, migrations, demo tenant, the five services (+ sandbox)
	@scripts/run.sh

test: install infra ## the whole suite against real RabbitMQ and PostgreSQL
	@deploy/tools/install-checkers.sh
	@scripts/install-browser.sh
	@$(ENV) PATH="$(CURDIR)/.infra/tools/bin:$$PATH" .venv/bin/pytest -q -p no:cacheprovider

test-chaos: install infra ## the long failure-injection scenarios
	@$(ENV) TISTIS_CHAOS=full .venv/bin/pytest -q -p no:cacheprovider tests/chaos

lint: install ## ruff, mypy and the architecture contracts
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/mypy libs/common/src services/*/src tools/cli/src sandbox/src

openapi: install ## regenerate services/ingress/openapi.json (committed; a test keeps it in step)
	.venv/bin/python -m tistis_ingress.openapi

bench: install infra ## the benchmarks (they print their figures)
	@$(ENV) for b in bench/*/run.py; do .venv/bin/python $$b; done

.PHONY: help install infra infra-down migrate seed run test test-chaos lint openapi bench
