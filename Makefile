# smtpdesk: `make run` to use it, `make test` to prove it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 5000
# Front-end files vendored from the npm registry (see `make vendor`).
HTMX_VERSION := 2.0.11
PICO_VERSION := 2.1.1
# axe-core, the accessibility checker the browser tests inject (tests only, never served).
AXE_VERSION := 4.14.1
# The sampling profiler of `make profile-worker` (not needed by the app, the tests or the bench).
PY_SPY_VERSION := 0.4.3

.PHONY: lint screenshots run test install install-test translations extract-messages system-test-deps node-test-deps \
	vendor bench bench-claims profile-worker clean

run: install translations
	$(BIN)/smtpdesk db upgrade
	$(BIN)/smtpdesk serve --host $(HOST) --port $(PORT)

# The suite runs on two processes (pytest-xdist), a test module per process so that its servers start once.
TEST_WORKERS ?= 2

test: install-test translations system-test-deps node-test-deps lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check webapp tests bench

# The README's pictures, taken by the browser test so they show the screens as they are.
screenshots: install-test translations system-test-deps
	SMTPDESK_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/e2e/test_configuration_flow.py tests/e2e/test_test_dialog.py

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[test]"
	touch $@

# Catalogs are compiled at install time (.mo files are not committed).
translations: install
	$(BIN)/pybabel compile -d webapp/translations

# After changing UI strings: extract them and merge into the catalogs, then translate the new entries.
extract-messages: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k lazy_ngettext:1,2 -k N_ -o webapp/translations/messages.pot .
	$(BIN)/pybabel update -i webapp/translations/messages.pot -d webapp/translations --no-fuzzy-matching

# Debian packages the tests use: chromium for the browser tests, microsocks as the SOCKS5 proxy, tinyproxy as an HTTP
# proxy that answers a wrong password with 401, npm (which brings Node) for the OAuth 2.0 server, postgresql for the
# tests on PostgreSQL. The tests start tinyproxy and a PostgreSQL cluster themselves on free loopback ports, so the
# system services their packages enable (where an init system starts them) are stopped and disabled again.
system-test-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v microsocks >/dev/null 2>&1 || missing="$$missing microsocks"; \
	command -v tinyproxy >/dev/null 2>&1 || missing="$$missing tinyproxy"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "Installing from Debian:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null \
			|| exit 1; \
		case "$$missing" in *tinyproxy*) \
			$(SUDO) systemctl disable --now tinyproxy >/dev/null 2>&1 \
				|| $(SUDO) service tinyproxy stop >/dev/null 2>&1 || true;; \
		esac; \
		case "$$missing" in *postgresql*) \
			$(SUDO) systemctl disable --now postgresql >/dev/null 2>&1 \
				|| $(SUDO) service postgresql stop >/dev/null 2>&1 || true;; \
		esac; \
	fi

# The OAuth 2.0 server the tests send against (oauth2-mock-server, tests only), installed exactly as
# tests/oauth_server/package-lock.json pins it; npm ci empties node_modules/ first, so the stamp goes with it.
node-test-deps: tests/oauth_server/node_modules/.installed

tests/oauth_server/node_modules/.installed: tests/oauth_server/package.json tests/oauth_server/package-lock.json \
		| system-test-deps
	cd tests/oauth_server && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Refresh static/vendor/ from the npm registry at the pinned versions (bump them above first).
vendor:
	rm -rf build/vendor && mkdir -p build/vendor
	cd build/vendor && npm pack -q htmx.org@$(HTMX_VERSION) @picocss/pico@$(PICO_VERSION) axe-core@$(AXE_VERSION) >/dev/null
	tar -xzf build/vendor/htmx.org-$(HTMX_VERSION).tgz -C build/vendor package/dist/htmx.min.js
	cp build/vendor/package/dist/htmx.min.js static/vendor/htmx.min.js
	tar -xzf build/vendor/picocss-pico-$(PICO_VERSION).tgz -C build/vendor package/css/pico.min.css
	cp build/vendor/package/css/pico.min.css static/vendor/pico.min.css
	tar -xzf build/vendor/axe-core-$(AXE_VERSION).tgz -C build/vendor package/axe.min.js package/LICENSE
	cp build/vendor/package/axe.min.js tests/e2e/vendor/axe.min.js
	cp build/vendor/package/LICENSE tests/e2e/vendor/axe-core.LICENSE
	rm -rf build/vendor

# Throughput and latency figures against baselines from the same run (docs/BENCHMARKS.md); BENCH_QUICK=1 for a
# smoke run. Debian's stunnel (implicit TLS), wrk (HTTP load) and postgresql (the bench starts a throwaway cluster, so
# the service the package enables is stopped, as for the tests); bench/delivery.py takes smtp-sink from postfix's .deb.
bench: install-test translations
	@missing=""; \
	command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || missing="$$missing stunnel4"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "Installing from Debian:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
		case "$$missing" in *postgresql*) \
			$(SUDO) systemctl disable --now postgresql >/dev/null 2>&1 \
				|| $(SUDO) service postgresql stop >/dev/null 2>&1 || true;; \
		esac; \
	fi
	BENCH_QUICK=$(BENCH_QUICK) BENCH_ONLY=$(BENCH_ONLY) $(BIN)/python -m bench.run

# What a rate-limited account's backlog and history cost a claim, printed only (make bench has them as its "claims"
# family, BENCH_ONLY=claims).
bench-claims: install
	$(BIN)/python -m bench.claim_backlog

# Where the worker's time goes: P1's drain sampled by py-spy (a flame graph in build/bench/).
profile-worker: install-test translations
	$(BIN)/pip install -q "py-spy==$(PY_SPY_VERSION)"
	mkdir -p build/bench
	$(BIN)/py-spy record --rate 200 --output build/bench/worker-profile.svg -- $(BIN)/python -m bench.profile_worker
	@echo "Flame graph: build/bench/worker-profile.svg"

clean:
	rm -rf $(VENV) build .pytest_cache
