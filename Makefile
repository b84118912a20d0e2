# kairos-extensions: the two commands a newcomer needs are `make demo` and `make test`.
# Both install the Debian packages they rely on first, so they work on a fresh machine.

CARGO ?= cargo
PREFIX ?= /usr
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
DESTDIR ?=
# Real components the tests and the demo run (see shared TESTING notes in the README).
PACKAGES := dbus polkitd systemd systemd-container squashfs-tools erofs-utils \
            docker-registry skopeo openssl util-linux curl libssl-dev pkg-config

.PHONY: all build release deps test lint unit demo sandbox sandbox-stop bench bench-reads bench-client install clean systemd254

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
test: deps lint build systemd254
	$(CARGO) test --workspace --locked

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

## release: the shipped binaries only. Building just these two packages keeps the test
## crate's `failpoints` feature (crash points for the crash tests) out of them; the grep proves it.
release:
	$(CARGO) build -p kairos-extensionsd -p kairos-ext --bins --locked --release
	@! grep -q KAIROS_FAILPOINT $(TARGET_DIR)/release/kairos-extensionsd $(TARGET_DIR)/release/kairos-ext || \
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
