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
# `make install` is a local install: man pages and the systemd drop-in go below /usr/local,
# where man and systemd look. The packages set /usr/share/man and their unit directory.
MANDIR     ?= /usr/local/share/man
# The switch tool (tools/pyvd-switch-agent: a running resource from VirtualDomain and back).
SBIN_DIR   ?= /usr/local/sbin
SYSTEMD_UNIT_DIR ?= /usr/local/lib/systemd/system
DROP_IN    := resource-agents-deps.target.d/50-pyvirtualdomain.conf
# Build-time tools (man pages, version, dist tarball) need only the standard library.
TOOLS_PYTHON ?= python3
BUILD      := $(CURDIR)/build
# Packages are built with the distribution's tools and python3 only (no venv, no pyenv).
SYSTEM_PATH := /usr/sbin:/usr/bin:/sbin:/bin
VERSION    := $(shell $(TOOLS_PYTHON) tools/version.py)
DIST       := $(BUILD)/dist/pyvirtualdomain-$(VERSION).tar.gz
DEB        := $(BUILD)/deb/pyvirtualdomain_$(VERSION)_all.deb
RPM        := $(BUILD)/rpm/RPMS/noarch/pyvirtualdomain-$(VERSION)-1.noarch.rpm
MAN_PAGES  := $(AGENTS:%=$(BUILD)/man/ocf_custom_%.7)

# Debian packages `make deps` installs, the same names on Debian 12 and 13. The agents' own
# dependencies (python3-libvirt, -lxml, -psutil) are the distribution's, in the venv too (see
# deps-python). build-essential: dpkg-buildpackage checks for it; python3-zstandard: Debian
# 13's kernel (the test guests') is zstd-compressed; debootstrap: make check-trixie.
DEBIAN_PACKAGES := libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-lxc \
	libvirt-clients python3-venv qemu-system-x86 \
	qemu-utils resource-agents pacemaker pacemaker-cli-utils corosync busybox-static cpio \
	linux-image-amd64 libguestfs-tools csync2 qemu-guest-agent \
	iproute2 libxml2-utils procps git debootstrap python3-zstandard \
	build-essential debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
	python3-build python3-installer python3-wheel lintian rpm man-db groff-base systemd pcs \
	python3-libvirt python3-lxml python3-psutil openssh-server openssh-client
# Installed where the release has them (`apt-cache policy` names a candidate), skipped where
# it does not. libvirt-daemon-driver-storage: Debian 13 moved libvirt's storage driver (the
# pools of start_resources) out of libvirt-daemon into its own package, which
# --no-install-recommends no longer pulls in.
DEBIAN_PACKAGES_WHERE_AVAILABLE := libvirt-daemon-driver-storage

.PHONY: deps deps-system deps-python install install-agents install-man install-systemd \
	uninstall man dist deb rpm packages check lint typecheck \
	metadata-check schemas test test-unit test-integration demo bench bench-scale clean

deps: deps-system deps-python

deps-system:
	@installed() { dpkg-query -W -f='$${Status}\n' "$$1" 2>/dev/null | grep -q '^install ok installed'; }; \
	known() { apt-cache policy "$$1" 2>/dev/null | grep -q '^  Candidate: [^(]'; }; \
	missing=$$(for p in $(DEBIAN_PACKAGES); do installed $$p || echo $$p; done); \
	optional=$$(for p in $(DEBIAN_PACKAGES_WHERE_AVAILABLE); do installed $$p || echo $$p; done); \
	updated=; \
	if [ -n "$$optional" ] && ! known libvirt-daemon; then \
	    apt-get update -qq || exit 1; updated=1; fi; \
	for p in $$optional; do if known $$p; then missing="$$missing $$p"; fi; done; \
	missing=$$(echo $$missing); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    if [ -z "$$updated" ]; then apt-get update -qq || exit 1; fi; \
	    policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
	        && policy=1; fi; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing >/dev/null; rc=$$?; \
	    if [ -n "$$policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	    exit $$rc; \
	fi

# The venv sees the distribution's python3-libvirt, python3-lxml and python3-psutil (system
# site packages): the tests run the bindings the .deb depends on and users run, whatever
# libvirt the release has (PyPI's libvirt-python must be built against the system libvirt,
# and 9.0.0 does not build against Debian 13's 11.3). Only the development tools come from
# PyPI. A venv made without system site packages (before this) is made again.
$(VENV)/.deps-stamp: requirements-dev.txt setup.cfg pyproject.toml
	if ! grep -qx 'include-system-site-packages = true' $(VENV)/pyvenv.cfg 2>/dev/null; then \
	    /usr/bin/python3 -m venv --clear --system-site-packages $(VENV); fi
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

deps-python: $(VENV)/.deps-stamp

# The package and metadata into $(PYTHON)'s environment, the agents into the OCF directory,
# the man pages and the host-shutdown ordering drop-in (README: Installing).
install: install-agents install-man install-systemd
	$(PYTHON) -m pip install -q --disable-pip-version-check .

install-agents:
	install -d $(DESTDIR)$(OCF_DIR) $(DESTDIR)$(SBIN_DIR)
	install -m 0755 tools/pyvd-switch-agent $(DESTDIR)$(SBIN_DIR)/pyvd-switch-agent
	for a in $(AGENTS); do \
	    sed -e '1s|^#!.*|#!$(PYTHON)|' agents/$$a > $(DESTDIR)$(OCF_DIR)/$$a.tmp && \
	    chmod 0755 $(DESTDIR)$(OCF_DIR)/$$a.tmp && mv $(DESTDIR)$(OCF_DIR)/$$a.tmp $(DESTDIR)$(OCF_DIR)/$$a; \
	done

# ocf_custom_<agent>(7), generated from metadata/ (always: the unit directory named in the
# page depends on the caller).
man:
	$(TOOLS_PYTHON) tools/gen_manpages.py --outdir $(BUILD)/man --version $(VERSION) \
	    --unit-dir $(SYSTEMD_UNIT_DIR) $(AGENTS:%=metadata/%.xml)

install-man: man
	install -d $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man7/
	install -m 0644 tools/pyvd-switch-agent.8 $(DESTDIR)$(MANDIR)/man8/

install-systemd:
	install -d $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$(dir $(DROP_IN))
	install -m 0644 systemd/50-pyvirtualdomain.conf $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$(DROP_IN)
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Undoes `make install` (same variables).
uninstall:
	rm -f $(AGENTS:%=$(DESTDIR)$(OCF_DIR)/%) $(AGENTS:%=$(DESTDIR)$(MANDIR)/man7/ocf_custom_%.7)
	rm -f $(DESTDIR)$(SBIN_DIR)/pyvd-switch-agent $(DESTDIR)$(MANDIR)/man8/pyvd-switch-agent.8
	rm -f $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$(DROP_IN)
	-rmdir $(DESTDIR)$(OCF_DIR) $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$(dir $(DROP_IN)) 2>/dev/null
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	$(PYTHON) -m pip uninstall -q -y pyvirtualdomain

# Packages (README: Installing). The source tarball carries the tree's files plus the files
# made from the one version in setup.cfg: debian/changelog and pyvirtualdomain.spec.
SOURCES := $(shell git ls-files --cached --others --exclude-standard 2>/dev/null)

dist: $(DIST)
$(DIST): $(wildcard $(SOURCES))
	$(TOOLS_PYTHON) tools/mkdist.py --outdir $(dir $@)

deb: $(DEB)
$(DEB): $(DIST)
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb
	tar -xzf $(DIST) -C $(BUILD)/deb
	cd $(BUILD)/deb/pyvirtualdomain-$(VERSION) && PATH=$(SYSTEM_PATH) \
	    dpkg-buildpackage -b -us -uc >../build.log 2>&1 \
	    || { tail -40 ../build.log; exit 1; }
	# lintian advises against root: as nobody when nobody can read the build. Its temporary
	# files go below build/ (it leaves some in TMPDIR).
	set -o pipefail; changes=$$(ls $(BUILD)/deb/*.changes); as=; tmp=$(BUILD)/deb/lintian-tmp; \
	mkdir -p $$tmp && chmod 1777 $$tmp; \
	if [ "$$(id -u)" = 0 ] && runuser -u nobody -- test -r $$changes; then as="runuser -u nobody --"; fi; \
	$$as env PATH=$(SYSTEM_PATH) TMPDIR=$$tmp lintian --fail-on error --display-level '>=pedantic' \
	    -E --tag-display-limit 0 $$changes | tee $(BUILD)/deb/lintian.txt; \
	rc=$$?; rm -rf $$tmp; exit $$rc
	@echo "built $@"

rpm: $(RPM)
$(RPM): $(DIST)
	rm -rf $(BUILD)/rpm && mkdir -p $(BUILD)/rpm
	# --nodeps: BuildRequires name RPM packages, which this Debian machine does not have.
	PATH=$(SYSTEM_PATH) rpmbuild -tb --nodeps --define "_topdir $(BUILD)/rpm" $(DIST) \
	    >$(BUILD)/rpm/build.log 2>&1 \
	    || { tail -40 $(BUILD)/rpm/build.log; exit 1; }
	@echo "built $@"

packages: deb rpm

lint: deps-python
	$(VENV)/bin/ruff check lib tests bench tools tools/pyvd-switch-agent agents/PyVirtualDomain \
	    agents/PyLXCDomain

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

# What CI runs: lint, types, metadata against the DTD, the packages (lintian included), and
# every test.
check: deps lint typecheck metadata-check packages test

# -- Debian 13 ("trixie") on this machine: make check-trixie ---------------------------------
# A Debian 13 root made with debootstrap (build/trixie-root, once), entered with
# tools/debroot.py in namespaces of its own; inside, the project's own `make deps` gives it
# Debian 13's packages and a venv of its own (build/trixie-root-venv, bound over .venv inside),
# and its builds go to build/trixie-root-build (bound over build/ inside). Set-up runs with the
# machine's network (apt, pip, and the archive downloads some tests need: tests.harness
# prefetch); everything else in a network namespace of its own. Parts that start libvirtd,
# qemu or a cluster hold the machine's harness lock, taken outside the root (its /run is
# private). README: Supported platforms.
TRIXIE_ROOT  ?= $(BUILD)/trixie-root
DEBROOT      := $(TOOLS_PYTHON) tools/debroot.py
HARNESS_LOCK := /run/pyvd-test.lock
# What runs against Debian 13's libvirt 11, qemu 10, Pacemaker 3.0, pcs 0.12 and Python 3.13
# besides the unit tests, metadata, lint-free packages (lintian) and the RPM build. Left to
# the Debian 12 pass only: what tests the harness or the agent's logic rather than what the
# distribution gives (see README: Supported platforms).
TRIXIE_TESTS ?= tests/integration/test_package.py tests/integration/test_systemd_ordering.py \
	tests/integration/test_lifecycle.py tests/integration/test_migration.py \
	tests/integration/test_faults.py tests/integration/test_lxc.py \
	tests/integration/test_pacemaker_tools.py tests/cluster/test_two_node.py
# In the root: a new root starts without it.
TRIXIE_STAMP := $(TRIXIE_ROOT)/.pyvd-deps-stamp

.PHONY: bench-migrate-load bench-evacuate check-trixie trixie-prepare trixie-integration \
	trixie-root trixie-shell
trixie-root: deps-system
	$(DEBROOT) build $(TRIXIE_ROOT) --suite trixie

# Keyed on the package list (this Makefile) and the venv's requirements.
$(TRIXIE_STAMP): Makefile requirements-dev.txt setup.cfg pyproject.toml
	$(DEBROOT) run $(TRIXIE_ROOT) --network host --no-daemons -- \
	    sh -c 'make deps && .venv/bin/python -m tests.harness prefetch'
	touch $@

check-trixie: trixie-prepare trixie-integration

# The part that needs no daemon and no lock (.ci/run runs it beside the Debian 12 pass).
trixie-prepare: trixie-root $(TRIXIE_STAMP)
	$(DEBROOT) run $(TRIXIE_ROOT) --no-daemons -- sh -c 'cat /etc/debian_version && \
	    make metadata-check test-unit packages PYTEST_ARGS="$(PYTEST_ARGS)"'

# Left to the Debian 12 pass: tests marked logic_only (the agent's URI and parameter logic,
# VirtualDomain side by side); everything else in TRIXIE_TESTS runs in both.
# VirtualDomain's side of the fault table runs in neither (bench/faults.py --run measures it).
trixie-integration: trixie-root $(TRIXIE_STAMP)
	flock $(HARNESS_LOCK) $(DEBROOT) run $(TRIXIE_ROOT) -- \
	    .venv/bin/python -m pytest -m "not logic_only" $(TRIXIE_TESTS) $(PYTEST_ARGS)

# A shell in the Debian 13 root (own network namespace; `make trixie-shell NET=host` for the
# machine's).
NET ?= own
trixie-shell: trixie-root $(TRIXIE_STAMP)
	$(DEBROOT) run $(TRIXIE_ROOT) --network $(NET) -- bash

demo: deps
	$(PY) tools/demo.py

# The Pacemaker Remote guide's cluster: two nodes with fencing, a guest node VM under our agent,
# a live migration and a power cut (docs/cluster-tests.md).
.PHONY: demo-cluster
demo-cluster: deps
	$(PY) tools/demo_cluster.py

# The randomized fault soak (docs/soak.md): the two-node cluster, three guests, EVENTS faults
# drawn from SEED, invariants checked all along; build/soak/<seed>.json and .md. TIME_LIMIT:
# seconds after which no new fault fires (0: none). SOAK_AGENT=virtualdomain: the same run
# with ocf:heartbeat:VirtualDomain. It takes the harness lock itself.
SEED       ?= 1
EVENTS     ?= 200
TIME_LIMIT ?= 0
SOAK_AGENT ?= ours
.PHONY: soak soak-virtualdomain soak-compare
soak: deps
	$(PY) -m tests.cluster.soak --seed $(SEED) --events $(EVENTS) --time-limit $(TIME_LIMIT) \
	    --agent $(SOAK_AGENT)

soak-virtualdomain:
	$(MAKE) soak SOAK_AGENT=virtualdomain

# build/soak/<SEED>-side-by-side.md from build/soak/<SEED>.json and <SEED>-virtualdomain.json
soak-compare: deps
	$(PY) -m tests.cluster.soak --compare build/soak/$(SEED).json \
	    build/soak/$(SEED)-virtualdomain.json

# See bench/README.md: each row measured against VirtualDomain (or virsh) in the same run.
bench: deps
	$(PY) bench/run.py
	$(PY) bench/lxc.py
	$(PY) bench/migrate.py

bench-scale: deps
	$(PY) bench/scale.py

# Live migration of a busy guest (docs/benchmarks-migrate-load.md). It runs in the Debian 13
# root: Debian 12's qemu 7.2 under TCG panics guests that dirty memory across a precopy
# migration (the report says more). BENCH_ARGS: e.g. --rates 0,16 --rounds 2.
BENCH_ARGS ?=
bench-migrate-load: trixie-root $(TRIXIE_STAMP)
	flock $(HARNESS_LOCK) $(DEBROOT) run $(TRIXIE_ROOT) -- \
	    .venv/bin/python bench/migrate_load.py $(BENCH_ARGS)

# Evacuating a node of N guests with pcs node standby, ours vs VirtualDomain
# (docs/benchmarks-evacuation.md and its plot).
bench-evacuate: deps
	$(PY) bench/evacuate.py $(BENCH_ARGS)

clean:
	rm -rf build .pybuild .pytest_cache .mypy_cache .ruff_cache lib/*.egg-info
