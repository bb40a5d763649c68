# The few targets people expect. `make help` lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help run worker test lint fmt migrate docker deps bench bench-reads bench-flood soak api-fuzz seed openapi config-check docker-config

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## Install system packages and cargo-nextest (idempotent)
	@scripts/install-deps.sh

run: ## Run the server on embedded SQLite (./data/gatehouse.db)
	$(CARGO) run -p gatehouse-server --bin gatehouse -- serve

worker: ## Run only the email outbox relay (no HTTP) on the same database
	$(CARGO) run -p gatehouse-server --bin gatehouse -- worker

test: deps ## Run the whole test suite (starts PostgreSQL/Redis if they are down)
	@scripts/ensure-services.sh
	$(CARGO) nextest run --workspace --profile ci

lint: ## rustfmt and clippy, as CI runs them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Benchmarks (/users/me vs its floor in 3 modes, sign-ins vs raw argon2, memory; login flood; login timing; mail latency; admin list, seeds 1,000,000 users once); results in bench-results/
	@scripts/ensure-services.sh
	$(CARGO) bench -p gatehouse-tests --bench users_me
	$(CARGO) bench -p gatehouse-tests --bench login_flood
	$(CARGO) bench -p gatehouse-tests --bench login_timing
	$(CARGO) bench -p gatehouse-tests --bench mail_latency
	$(CARGO) bench -p gatehouse-tests --bench admin_list

bench-reads: ## Only /users/me vs its floor, sign-ins vs raw argon2, memory; results in bench-results/users-me.md
	@scripts/ensure-services.sh
	$(CARGO) bench -p gatehouse-tests --bench users_me

bench-flood: ## Only the login-flood backpressure benchmark; results in bench-results/login-flood.md
	$(CARGO) bench -p gatehouse-tests --bench login_flood

soak: ## Mixed load on PostgreSQL and Redis for SOAK_MINUTES (default 30): RSS, fds, connections, errors each minute; bench-results/soak.md
	@scripts/ensure-services.sh
	SOAK_MINUTES=$${SOAK_MINUTES:-30} $(CARGO) bench -p gatehouse-tests --bench soak

api-fuzz: ## Fuzz the API against openapi.json with Schemathesis on SQLite and PostgreSQL (PyPI; API_FUZZ_SECS per engine, default 300)
	@scripts/api-fuzz.sh $${API_FUZZ_SECS:-300}

seed: ## Add 10,000 realistic users to DATABASE_URL (SEED_USERS=n for more)
	$(CARGO) run -p gatehouse-server --bin gatehouse -- seed --users $${SEED_USERS:-10000}

openapi: ## Regenerate the committed openapi.json from the code (a test fails when it drifts)
	$(CARGO) run -q -p gatehouse-server --bin gatehouse -- openapi > openapi.json

config-check: ## Print the effective configuration (secrets redacted), or the one-line error
	$(CARGO) run -q -p gatehouse-server --bin gatehouse -- config check

migrate: ## Apply migrations to DATABASE_URL (default: the embedded SQLite file)
	$(CARGO) run -p gatehouse-server --bin gatehouse -- migrate

docker: ## Build the container image (needs a Docker engine)
	docker build -f docker/Dockerfile -t gatehouse:latest .

docker-config: ## Validate docker/docker-compose.yml without a daemon (and that it requires GATEHOUSE_JWT_SECRET)
	@if docker compose version >/dev/null 2>&1; then compose="docker compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then compose="docker-compose"; \
	else echo "neither 'docker compose' nor 'docker-compose' is installed (apt-get install docker-compose)" >&2; exit 1; fi; \
	if env -u GATEHOUSE_JWT_SECRET $$compose -f docker/docker-compose.yml config --quiet >/dev/null 2>&1; then \
		echo "docker/docker-compose.yml renders without GATEHOUSE_JWT_SECRET: it must require it" >&2; exit 1; fi; \
	GATEHOUSE_JWT_SECRET=placeholder-for-make-docker-config $$compose -f docker/docker-compose.yml config --quiet
	@echo "docker/docker-compose.yml is valid and requires GATEHOUSE_JWT_SECRET"
