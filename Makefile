# PyVirtualDomain. `make demo` and `make check` do all set-up on a fresh Debian 12 machine.
SHELL      := /bin/bash
VENV       ?= $(CURDIR)/.venv
PY         := $(VENV)/bin/python
# Interpreter the installed agents run with (Pacemaker runs them with a minimal environment,
# so the shebang names it): the one with libvirt-python, lxml and psutil.
PYTHON     ?= $(PY)
DESTDIR    ?=
OCF_DIR    ?= /usr/lib/ocf/resource.d/custom
AGENTS     := PyVirtualDomain PyLXCDomain
PYTEST_ARGS ?=

DEBIAN_PACKAGES := libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-lxc \
	libvirt-clients libvirt-dev pkg-config gcc python3-dev python3-venv qemu-system-x86 \
	qemu-utils resource-agents pacemaker pacemaker-cli-utils corosync busybox-static cpio \
	linux-image-amd64 libguestfs-tools csync2 \
	iproute2 libxml2-utils procps

.PHONY: deps deps-system deps-python install install-agents check lint typecheck \
	metadata-check schemas test test-unit test-integration demo bench bench-scale clean

deps: deps-system deps-python

deps-system:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.deps-stamp: requirements.txt requirements-dev.txt setup.cfg pyproject.toml
	test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

deps-python: $(VENV)/.deps-stamp

# The package and metadata into $(PYTHON)'s environment, the agents into the OCF directory.
install: install-agents
	$(PYTHON) -m pip install -q --disable-pip-version-check .

install-agents:
	install -d $(DESTDIR)$(OCF_DIR)
	for a in $(AGENTS); do \
	    sed -e '1s|^#!.*|#!$(PYTHON)|' agents/$$a > $(DESTDIR)$(OCF_DIR)/$$a.tmp && \
	    chmod 0755 $(DESTDIR)$(OCF_DIR)/$$a.tmp && mv $(DESTDIR)$(OCF_DIR)/$$a.tmp $(DESTDIR)$(OCF_DIR)/$$a; \
	done

lint: deps-python
	$(VENV)/bin/ruff check lib tests bench tools agents/PyVirtualDomain agents/PyLXCDomain

typecheck: deps-python
	$(VENV)/bin/mypy

metadata-check: deps-system deps-python
	for a in $(AGENTS); do \
	    xmllint --noout --path /usr/share/resource-agents --valid metadata/$$a.xml || exit 1; \
	done
	$(PY) tools/gen_schemas.py --check

# The compiled schema every action loads (lib/pyvirtualdomain/_schemas.py) from metadata/.
schemas: deps-python
	$(PY) tools/gen_schemas.py

test-unit: deps-python
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: deps
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test: deps
	$(PY) -m pytest tests $(PYTEST_ARGS)

# What CI runs: lint, types, metadata against the DTD, and every test.
check: deps lint typecheck metadata-check test

demo: deps
	$(PY) tools/demo.py

# The Pacemaker Remote guide's cluster: two nodes with fencing, a guest node VM under our agent,
# a live migration and a power cut (docs/cluster-tests.md).
.PHONY: demo-cluster
demo-cluster: deps
	$(PY) tools/demo_cluster.py

# See bench/README.md: each row measured against VirtualDomain (or virsh) in the same run.
bench: deps
	$(PY) bench/run.py
	$(PY) bench/lxc.py
	$(PY) bench/migrate.py

bench-scale: deps
	$(PY) bench/scale.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache lib/*.egg-info
