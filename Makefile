# kairos-extensions: the two commands a newcomer needs are `make demo` and `make test`.
# Both install the Debian packages they rely on first, so they work on a fresh machine.

CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
# Real components the tests and the demo run (see shared TESTING notes in the README).
PACKAGES := dbus polkitd systemd systemd-container squashfs-tools erofs-utils \
            docker-registry skopeo openssl util-linux curl libssl-dev pkg-config
# The Cockpit page's browser test (node 20 and npm come with the machine).
PACKAGES += cockpit-ws cockpit-bridge chromium

.PHONY: all build release deps test lint unit demo sandbox sandbox-stop bench install clean

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

## test: everything CI runs: packages, lint, the whole suite against real components
test: deps lint build cockpit
	$(CARGO) test --workspace --locked

## demo: a tour of the service and kairos-ext on a sandboxed system (the host is untouched)
demo: deps build
	scripts/demo.sh

## sandbox: start the sandboxed service and leave it running; prints how to use and stop it
sandbox: deps build
	scripts/sandbox.sh start

sandbox-stop:
	scripts/sandbox.sh stop

## bench: install a 512 MiB extension from a local registry next to skopeo; prints the figures
bench: deps release
	scripts/bench.sh

## release: the shipped binaries only. Building just these two packages keeps the test
## crate's `failpoints` feature (crash points for the crash tests) out of them; the grep proves it.
release:
	$(CARGO) build -p kairos-extensionsd -p kairos-ext --bins --locked --release
	@! grep -q KAIROS_FAILPOINT target/release/kairos-extensionsd target/release/kairos-ext || \
	  { echo "release binaries carry crash points (engine::failpoint)"; exit 1; }

## install: install binaries and system files under $(DESTDIR)$(PREFIX) (run `make release` first)
install:
	install -Dm0755 target/release/kairos-extensionsd $(DESTDIR)$(PREFIX)/libexec/kairos-extensionsd
	install -Dm0755 target/release/kairos-ext $(DESTDIR)$(PREFIX)/bin/kairos-ext
	install -Dm0644 dbus-interfaces/org.kairos.Extensions1.xml $(DESTDIR)$(PREFIX)/share/dbus-1/interfaces/org.kairos.Extensions1.xml
	install -Dm0644 systemd/org.kairos.Extensions1.conf $(DESTDIR)$(PREFIX)/share/dbus-1/system.d/org.kairos.Extensions1.conf
	install -Dm0644 systemd/org.kairos.Extensions1.service $(DESTDIR)$(PREFIX)/share/dbus-1/system-services/org.kairos.Extensions1.service
	install -Dm0644 systemd/kairos-extensionsd.service $(DESTDIR)$(PREFIX)/lib/systemd/system/kairos-extensionsd.service
	install -Dm0644 systemd/kairos-extensions-boot.service $(DESTDIR)$(PREFIX)/lib/systemd/system/kairos-extensions-boot.service
	install -Dm0755 systemd/generators/kairos-extensions-generator $(DESTDIR)$(PREFIX)/lib/systemd/system-generators/kairos-extensions-generator
	install -Dm0644 systemd/kairos-extensions.tmpfiles.conf $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/kairos-extensions.conf
	install -Dm0644 polkit/org.kairos.Extensions1.policy $(DESTDIR)$(PREFIX)/share/polkit-1/actions/org.kairos.Extensions1.policy
	install -Dm0644 polkit/org.kairos.Extensions1.rules.example $(DESTDIR)$(PREFIX)/share/doc/kairos-extensions/org.kairos.Extensions1.rules.example

clean:
	$(CARGO) clean

## cockpit: the Cockpit page (cockpit/dist): npm ci from the lock file, type check, unit tests, bundle
.PHONY: cockpit cockpit-screenshots install-cockpit clean-cockpit
COCKPIT_SOURCES := $(shell find cockpit/src cockpit/test/unit -type f 2>/dev/null) cockpit/build.mjs cockpit/tsconfig.json

cockpit: cockpit/dist/index.js.gz

# No package needs its install script (esbuild's only checks the binary that its
# platform package brings), so none runs.
cockpit/node_modules/.installed: cockpit/package.json cockpit/package-lock.json
	cd cockpit && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

cockpit/dist/index.js.gz: cockpit/node_modules/.installed $(COCKPIT_SOURCES)
	cd cockpit && node_modules/.bin/tsc --noEmit -p . && node --test test/unit/ && node build.mjs

## cockpit-screenshots: run the browser test and keep its screenshots in docs/ (needs root)
cockpit-screenshots: deps build cockpit
	KAIROS_COCKPIT_SCREENSHOTS=$(CURDIR)/docs $(CARGO) test -p kairos-extensions-tests --test cockpit --locked

install: install-cockpit

install-cockpit: cockpit
	install -d $(DESTDIR)$(PREFIX)/share/cockpit/kairos-extensions
	cp -R cockpit/dist/. $(DESTDIR)$(PREFIX)/share/cockpit/kairos-extensions/
	chmod -R u=rwX,go=rX $(DESTDIR)$(PREFIX)/share/cockpit/kairos-extensions

clean: clean-cockpit

clean-cockpit:
	rm -rf cockpit/dist cockpit/node_modules
