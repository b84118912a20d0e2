# kairos-extensions: the two commands a newcomer needs are `make demo` and `make test`.
# Both install the Debian packages they rely on first, so they work on a fresh machine.

CARGO ?= cargo
PREFIX ?= /usr
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
DESTDIR ?=
# Real components the tests and the demo run (see shared TESTING notes in the README).
# man-db, groff-base, binutils, zsh, fish and dpkg: the packaging tests (man pages render
# without warnings, completions parse, split debug info, the .deb installs into a root).
PACKAGES := dbus polkitd systemd systemd-container squashfs-tools erofs-utils \
            docker-registry skopeo openssl util-linux curl libssl-dev pkg-config \
            man-db groff-base binutils zsh fish dpkg
# The Cockpit page's browser test (node 20 and npm come with the machine).
PACKAGES += cockpit-ws cockpit-bridge chromium

.PHONY: all build release deps test lint unit demo sandbox sandbox-stop bench bench-reads bench-client install clean \
        systemd254 gendoc dist uninstall manifest deb deb-only stress

all: build

build:
	$(CARGO) build --workspace --bins --locked

## deps: install the Debian packages the tests and the demo need (idempotent)
deps:
	@missing=$$(for p in $(PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

## lint: formatting and clippy, as CI enforces them
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## test: everything CI runs: packages, lint, the whole suite against real components.
## A test that hangs is killed (with every process it started) after TEST_TIMEOUT, so the
## run fails with the suite's output instead of outliving CI.
TEST_TIMEOUT ?= 35m
test: deps lint build systemd254 cockpit
	timeout --kill-after=1m $(TEST_TIMEOUT) $(CARGO) test --workspace --locked

## stress: the stress tests (filesystem faults, bus fuzzing, load, concurrency, polkit faults)
## at STRESS_SCALE times the size `make test` runs them at; prints the figures (RELIABILITY.md)
STRESS_SCALE ?= 10
STRESS_TESTS := faults bus_fuzz load concurrency polkit_faults
STRESS_TIMEOUT ?= 25m
stress: deps build
	KAIROS_STRESS_SCALE=$(STRESS_SCALE) timeout --kill-after=1m $(STRESS_TIMEOUT) $(CARGO) test -p kairos-extensions-tests --locked \
	  $(addprefix --test ,$(STRESS_TESTS)) -- --nocapture --test-threads 1

## systemd254: systemd 254 unpacked beside the host's (nothing installed), for version comparisons
systemd254: deps
	scripts/systemd254.sh

## demo: a tour of the service and kairos-ext on a sandboxed system (the host is untouched)
demo: deps build
	scripts/demo.sh

## sandbox: start the sandboxed service and leave it running; prints how to use and stop it
sandbox: deps build
	scripts/sandbox.sh start

sandbox-stop:
	scripts/sandbox.sh stop

## bench: install a 512 MiB extension from a local registry next to skopeo, then the read
## path with 10 to 10 000 extensions (BENCH_SIZES); prints the figures (BENCHMARKS.md)
bench: deps release bench-client
	scripts/bench.sh
	scripts/bench-reads.sh

## bench-reads: the read-path half of `make bench` alone
bench-reads: deps release bench-client
	scripts/bench-reads.sh

bench-client:
	$(CARGO) build -p kairos-extensions-tests --bin kx-bench --locked --release

## fuzz: every parser under libFuzzer for FUZZ_SECONDS (default 15) each, from the corpus
## in fuzz/corpus/; fails on a panic, a hang or an over-limit allocation (needs nightly;
## installs cargo-fuzz). fuzz-replay: that corpus through every target on the pinned toolchain.
.PHONY: fuzz fuzz-replay
fuzz:
	fuzz/run.sh

fuzz-replay:
	$(CARGO) test --manifest-path fuzz/Cargo.toml --locked

## release: the shipped binaries only. Building just these two packages keeps the test
## crate's `failpoints` feature (crash points for the crash tests) out of them; the grep proves it.
release:
	$(CARGO) build -p kairos-extensionsd -p kairos-ext --bins --locked --release
	@! grep -q KAIROS_FAILPOINT $(TARGET_DIR)/release/kairos-extensionsd $(TARGET_DIR)/release/kairos-ext || \
	  { echo "release binaries carry crash points (engine::failpoint)"; exit 1; }

# ---------------------------------------------------------------------------------------
# Installation. `make release gendoc` builds; `make install` only copies, so it can run as
# root after a build as a user. PROFILE=debug installs the debug build instead (the
# packaging tests do, to avoid a release build).

# Cargo's output directory, wherever CARGO_TARGET_DIR puts it.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
PROFILE ?= release
BUILD_DIR = $(TARGET_DIR)/$(PROFILE)
# Stripped binaries, split debug info, man pages and completions of one profile.
DIST ?= $(TARGET_DIR)/dist/$(PROFILE)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

BINDIR ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/kairos-extensions
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSTEMDGENERATORDIR ?= $(PREFIX)/lib/systemd/system-generators
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DBUS_SERVICEDIR ?= $(DATADIR)/dbus-1/system-services
DBUS_INTERFACEDIR ?= $(DATADIR)/dbus-1/interfaces
# dbus-daemon reads bus policies from /usr/share/dbus-1/system.d and /etc/dbus-1/system.d
# only, and polkitd reads actions from /usr/share/polkit-1/actions only: outside /usr the
# files go where they are read.
DBUS_POLICYDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/share/dbus-1/system.d,/etc/dbus-1/system.d)
POLKIT_ACTIONDIR ?= /usr/share/polkit-1/actions
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
# Debian's zsh reads packages' completions from vendor-completions, local ones from site-functions.
ZSHCOMPDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/share/zsh/vendor-completions,$(DATADIR)/zsh/site-functions)
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
COCKPITDIR ?= $(DATADIR)/cockpit/kairos-extensions
# The built Cockpit page (`make cockpit`), relative to cockpit/dist.
COCKPIT_PAGE = $(patsubst cockpit/dist/%,%,$(shell find cockpit/dist -type f 2>/dev/null | sort))

# Every file `make install` writes, and `make uninstall` removes.
MANIFEST = \
	$(BINDIR)/kairos-ext \
	$(LIBEXECDIR)/kairos-extensionsd \
	$(SYSTEMDUNITDIR)/kairos-extensionsd.service \
	$(SYSTEMDUNITDIR)/kairos-extensions-boot.service \
	$(SYSTEMDUNITDIR)/kairos-extensions-update.service \
	$(SYSTEMDUNITDIR)/kairos-extensions-update.timer \
	$(SYSTEMDGENERATORDIR)/kairos-extensions-generator \
	$(TMPFILESDIR)/kairos-extensions.conf \
	$(DBUS_SERVICEDIR)/org.kairos.Extensions1.service \
	$(DBUS_POLICYDIR)/org.kairos.Extensions1.conf \
	$(DBUS_INTERFACEDIR)/org.kairos.Extensions1.xml \
	$(POLKIT_ACTIONDIR)/org.kairos.Extensions1.policy \
	$(MANDIR)/man1/kairos-ext.1 \
	$(MANDIR)/man5/org.kairos.Extensions1.5 \
	$(MANDIR)/man8/kairos-extensionsd.8 \
	$(BASHCOMPDIR)/kairos-ext \
	$(ZSHCOMPDIR)/_kairos-ext \
	$(FISHCOMPDIR)/kairos-ext.fish \
	$(DOCDIR)/README.md \
	$(DOCDIR)/extensions.toml.example \
	$(DOCDIR)/org.kairos.Extensions1.rules.example \
	$(addprefix $(DOCDIR)/,$(notdir $(wildcard docs/*.md))) \
	$(addprefix $(COCKPITDIR)/,$(COCKPIT_PAGE))

# The templates name the binary's directory; everything else is copied as it is.
# $(call install-subst,TEMPLATE,PATH,MODE)
define install-subst
install -d $(dir $(DESTDIR)$(2))
sed -e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' $(1) > $(DESTDIR)$(2)
chmod $(3) $(DESTDIR)$(2)
endef

## gendoc: build the generator of man pages and completions (not shipped)
gendoc:
	$(CARGO) build -p kairos-extensions-gendoc --bins --locked $(if $(filter release,$(PROFILE)),--release)

## dist: stripped binaries with their debug info split off, man pages and completions,
## from an existing build of $(PROFILE) (`make release gendoc`, or any `make build`)
dist: $(DIST)/.done

$(DIST)/.done: $(addprefix $(BUILD_DIR)/,kairos-ext kairos-extensionsd kairos-extensions-gendoc)
	rm -rf $(DIST) && mkdir -p $(DIST)/bin $(DIST)/debug
	for b in kairos-ext kairos-extensionsd; do \
	  objcopy --only-keep-debug --compress-debug-sections $(BUILD_DIR)/$$b $(DIST)/debug/$$b.debug && \
	  objcopy --strip-all --remove-section=.comment --remove-section=.note \
	    --add-gnu-debuglink=$(DIST)/debug/$$b.debug $(BUILD_DIR)/$$b $(DIST)/bin/$$b || exit 1; \
	done
	$(BUILD_DIR)/kairos-extensions-gendoc $(DIST)
	touch $@

$(BUILD_DIR)/%:
	@echo "$@ is missing: run make release gendoc first (or make build for PROFILE=debug)"; exit 1

## install: install into $(DESTDIR)$(PREFIX) (run `make release gendoc` first)
install: dist
	$(call install-subst,systemd/kairos-extensionsd.service.in,$(SYSTEMDUNITDIR)/kairos-extensionsd.service,0644)
	$(call install-subst,systemd/kairos-extensions-boot.service.in,$(SYSTEMDUNITDIR)/kairos-extensions-boot.service,0644)
	$(call install-subst,systemd/kairos-extensions-update.service.in,$(SYSTEMDUNITDIR)/kairos-extensions-update.service,0644)
	$(call install-subst,systemd/kairos-extensions-update.timer.in,$(SYSTEMDUNITDIR)/kairos-extensions-update.timer,0644)
	$(call install-subst,systemd/generators/kairos-extensions-generator.in,$(SYSTEMDGENERATORDIR)/kairos-extensions-generator,0755)
	$(call install-subst,systemd/org.kairos.Extensions1.service.in,$(DBUS_SERVICEDIR)/org.kairos.Extensions1.service,0644)
	install -Dm0755 $(DIST)/bin/kairos-ext $(DESTDIR)$(BINDIR)/kairos-ext
	install -Dm0755 $(DIST)/bin/kairos-extensionsd $(DESTDIR)$(LIBEXECDIR)/kairos-extensionsd
	install -Dm0644 systemd/kairos-extensions.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/kairos-extensions.conf
	install -Dm0644 systemd/org.kairos.Extensions1.conf $(DESTDIR)$(DBUS_POLICYDIR)/org.kairos.Extensions1.conf
	install -Dm0644 dbus-interfaces/org.kairos.Extensions1.xml $(DESTDIR)$(DBUS_INTERFACEDIR)/org.kairos.Extensions1.xml
	install -Dm0644 polkit/org.kairos.Extensions1.policy $(DESTDIR)$(POLKIT_ACTIONDIR)/org.kairos.Extensions1.policy
	install -Dm0644 $(DIST)/man/kairos-ext.1 $(DESTDIR)$(MANDIR)/man1/kairos-ext.1
	install -Dm0644 packaging/man/org.kairos.Extensions1.5 $(DESTDIR)$(MANDIR)/man5/org.kairos.Extensions1.5
	install -Dm0644 $(DIST)/man/kairos-extensionsd.8 $(DESTDIR)$(MANDIR)/man8/kairos-extensionsd.8
	install -Dm0644 $(DIST)/completions/kairos-ext.bash $(DESTDIR)$(BASHCOMPDIR)/kairos-ext
	install -Dm0644 $(DIST)/completions/_kairos-ext $(DESTDIR)$(ZSHCOMPDIR)/_kairos-ext
	install -Dm0644 $(DIST)/completions/kairos-ext.fish $(DESTDIR)$(FISHCOMPDIR)/kairos-ext.fish
	install -Dm0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -Dm0644 packaging/extensions.toml.example $(DESTDIR)$(DOCDIR)/extensions.toml.example
	install -Dm0644 polkit/org.kairos.Extensions1.rules.example $(DESTDIR)$(DOCDIR)/org.kairos.Extensions1.rules.example
	$(if $(wildcard docs/*.md),install -m0644 $(wildcard docs/*.md) $(DESTDIR)$(DOCDIR)/)

## uninstall: remove what `make install` installed (same PREFIX and DESTDIR)
uninstall:
	rm -f $(addprefix $(DESTDIR),$(MANIFEST))
	-rmdir $(DESTDIR)$(DOCDIR) $(DESTDIR)$(COCKPITDIR)/assets $(DESTDIR)$(COCKPITDIR) 2>/dev/null

## manifest: the files `make install` writes, one per line
manifest:
	@printf '%s\n' $(MANIFEST)

# ---------------------------------------------------------------------------------------
# The Debian package: dpkg-deb over a `make install` tree, with maintainer scripts written
# the way debhelper writes them (packaging/debian/), and a -dbgsym package with the split
# debug info, found by build-id.
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
# xz as Debian does; the packaging test passes gzip, which is much faster on debug builds.
DEB_COMPRESSION ?= xz
DEB_MAINTAINER ?= kairos-extensions maintainers <maintainers@kairos-extensions.invalid>
DEB_DIR = $(DIST)/deb
DEB_OUT ?= $(TARGET_DIR)
DEB = $(DEB_OUT)/kairos-extensions_$(VERSION)_$(DEB_ARCH).deb
DEB_DBGSYM = $(DEB_OUT)/kairos-extensions-dbgsym_$(VERSION)_$(DEB_ARCH).deb

## deb: build the release binaries and the .deb packages
deb: release
	$(MAKE) gendoc PROFILE=release
	$(MAKE) deb-only PROFILE=release

## deb-only: the .deb packages from an existing build of $(PROFILE)
deb-only:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)
	$(MAKE) install PREFIX=/usr DESTDIR=$(abspath $(DEB_DIR))/root
	gzip -9n $(DEB_DIR)/root/usr/share/man/man*/*
	install -Dm0644 packaging/debian/copyright $(DEB_DIR)/root/usr/share/doc/kairos-extensions/copyright
	install -d $(DEB_DIR)/root/DEBIAN
	install -m0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm $(DEB_DIR)/root/DEBIAN/
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@ARCH@|$(DEB_ARCH)|' -e 's|@MAINTAINER@|$(DEB_MAINTAINER)|' \
	    -e "s|@SIZE@|$$(du -sk --exclude=DEBIAN $(DEB_DIR)/root | cut -f1)|" \
	    packaging/debian/control.in > $(DEB_DIR)/root/DEBIAN/control
	cd $(DEB_DIR)/root && find usr -type f -exec md5sum {} + | sort -k2 > DEBIAN/md5sums
	dpkg-deb --root-owner-group -Z$(DEB_COMPRESSION) --build $(DEB_DIR)/root $(DEB)
	rm -rf $(DEB_DIR)/root
	ids=; for b in kairos-ext kairos-extensionsd; do \
	  id=$$(readelf -n $(BUILD_DIR)/$$b | sed -n 's/.*Build ID: *//p'); \
	  test -n "$$id" || { echo "$$b has no build-id"; exit 1; }; \
	  install -Dm0644 $(DIST)/debug/$$b.debug \
	    $(DEB_DIR)/dbgsym/usr/lib/debug/.build-id/$$(echo $$id | cut -c1-2)/$$(echo $$id | cut -c3-).debug; \
	  ids="$$ids $$id"; \
	done; \
	install -d $(DEB_DIR)/dbgsym/DEBIAN $(DEB_DIR)/dbgsym/usr/share/doc && \
	ln -s kairos-extensions $(DEB_DIR)/dbgsym/usr/share/doc/kairos-extensions-dbgsym && \
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@ARCH@|$(DEB_ARCH)|' -e 's|@MAINTAINER@|$(DEB_MAINTAINER)|' \
	    -e "s|@SIZE@|$$(du -sk --exclude=DEBIAN $(DEB_DIR)/dbgsym | cut -f1)|" -e "s|@BUILD_IDS@|$${ids# }|" \
	    packaging/debian/control-dbgsym.in > $(DEB_DIR)/dbgsym/DEBIAN/control
	dpkg-deb --root-owner-group -Z$(DEB_COMPRESSION) --build $(DEB_DIR)/dbgsym $(DEB_DBGSYM)
	rm -rf $(DEB_DIR)
	@echo "built $(DEB) and $(DEB_DBGSYM)"

clean:
	$(CARGO) clean

## cockpit: the Cockpit page (cockpit/dist): npm ci from the lock file, type check, unit tests, bundle
.PHONY: cockpit cockpit-screenshots install-cockpit clean-cockpit
COCKPIT_SOURCES := $(shell find cockpit/src cockpit/test/unit -type f 2>/dev/null) cockpit/build.mjs cockpit/tsconfig.json

cockpit: cockpit/dist/index.js.gz

# No package needs its install script (esbuild's only checks the binary that its
# platform package brings), so none runs.
# The page is built and copied under one lock: tests run `make install` in parallel, and
# a build that starts while another copies the page would delete what it copies.
COCKPIT_LOCK := flock cockpit/.build.lock

cockpit/node_modules/.installed: cockpit/package.json cockpit/package-lock.json
	$(COCKPIT_LOCK) sh -c 'cd cockpit && npm ci --no-audit --no-fund --ignore-scripts'
	touch $@

cockpit/dist/index.js.gz: cockpit/node_modules/.installed $(COCKPIT_SOURCES)
	$(COCKPIT_LOCK) sh -c 'cd cockpit && node_modules/.bin/tsc --noEmit -p . && node --test test/unit/ && node build.mjs'

## cockpit-screenshots: run the browser test and keep its screenshots in docs/ (needs root)
cockpit-screenshots: deps build cockpit
	KAIROS_COCKPIT_SCREENSHOTS=$(CURDIR)/docs $(CARGO) test -p kairos-extensions-tests --test cockpit --locked

install: install-cockpit

install-cockpit: cockpit
	install -d $(DESTDIR)$(COCKPITDIR)
	$(COCKPIT_LOCK) cp -R cockpit/dist/. $(DESTDIR)$(COCKPITDIR)/
	chmod -R u=rwX,go=rX $(DESTDIR)$(COCKPITDIR)

clean: clean-cockpit

clean-cockpit:
	rm -rf cockpit/dist cockpit/node_modules
