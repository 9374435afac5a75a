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
	@$(ENV) PATH="$(CURDIR)/.infra/tools/bin:$$PATH" .venv/bin/pytest -q -p no:cacheprovider --durations=25

test-chaos: install infra ## the long failure-injection scenarios
	@$(ENV) TISTIS_CHAOS=full .venv/bin/pytest -q -p no:cacheprovider tests/chaos

eval: install ## the assistant's evaluation set against the real Anthropic API (needs ANTHROPIC_API_KEY)
	@.venv/bin/python -m tistis_ai_responder.evaluation

# RabbitMQ 4.0 (Debian trixie, in a debootstrapped folder .infra/trixie, chrooted) on ports of its
# own: the broker tests, then the short chaos form whose broker restarts are 4.0 too. Minutes;
# not part of `make test`.
RMQ4 := TISTIS_RABBITMQ_ROOT=$(CURDIR)/.infra/trixie
test-rabbitmq4: install infra ## the broker tests and the short chaos form against RabbitMQ 4.0
	@scripts/rabbitmq4-root.sh >/dev/null
	@$(RMQ4) TISTIS_AMQP_PORT=5682 TISTIS_MGMT_PORT=15682 $(INFRA) up rabbitmq
	@curl -fsS -u guest:guest "http://127.0.0.1:15682/api/overview?columns=rabbitmq_version" \
	  | grep -q '"rabbitmq_version":"4\.' || { echo "the broker on 5682 is not RabbitMQ 4.x" >&2; exit 1; }
	@$(ENV) $(RMQ4) RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5682/ \
	  RABBITMQ_MANAGEMENT_URL=http://guest:guest@127.0.0.1:15682 \
	  TISTIS_CHAOS_PG_PORT=5462 TISTIS_CHAOS_AMQP_PORT=5702 TISTIS_CHAOS_MGMT_PORT=15702 \
	  PATH="$(CURDIR)/.infra/tools/bin:$$PATH" .venv/bin/pytest -q -p no:cacheprovider \
	  libs/common/tests tools/cli/tests/test_dlq.py tools/cli/tests/test_doctor_jobs.py \
	  tests/chaos

lint: install ## ruff, mypy and the architecture contracts
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/lint-imports --no-cache importlinter-runtime.toml
	.venv/bin/mypy libs/common/src services/*/src tools/cli/src sandbox/src

openapi: install ## regenerate services/ingress/openapi.json (committed; a test keeps it in step)
	.venv/bin/python -m tistis_ingress.openapi

event-schema: install ## regenerate libs/common/event-schema.json, the events' JSON Schema (committed; a test keeps it in step)
	.venv/bin/python -m tistis_common.event_schema

bench: install infra ## the benchmarks (they print their figures)
	@$(ENV) for b in bench/*/run.py; do .venv/bin/python $$b; done

bench-pipeline: install infra ## the pipeline targets: 50 patients/s for 60 s, model 2 s; 50/s, model 10 s (500 waiting); CPU round
	@$(ENV) .venv/bin/python bench/pipeline/run.py --rates 50 --seconds 60 --model-seconds 2 --cpu-rate 0
	@$(ENV) .venv/bin/python bench/pipeline/run.py --rates 50 --seconds 30 --model-seconds 10 --cpu-rate 130

.PHONY: help install infra infra-down migrate seed run test test-chaos test-rabbitmq4 eval lint openapi event-schema bench bench-pipeline
