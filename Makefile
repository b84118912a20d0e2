# kairos-extensions: the two commands a newcomer needs are `make demo` and `make test`.
# Both install the Debian packages they rely on first, so they work on a fresh machine.

CARGO ?= cargo
# Real components the tests and the demo run (see shared TESTING notes in the README).
PACKAGES := dbus polkitd systemd systemd-container squashfs-tools erofs-utils \
            docker-registry skopeo openssl util-linux curl

.PHONY: all build deps test lint unit demo sandbox sandbox-stop clean

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
test: deps lint build
	$(CARGO) test --workspace --locked

## demo: a tour of the service and kairos-ext on a sandboxed system (the host is untouched)
demo: deps build
	scripts/demo.sh

## sandbox: start the sandboxed service and leave it running; prints how to use and stop it
sandbox: deps build
	scripts/sandbox.sh start

sandbox-stop:
	scripts/sandbox.sh stop

clean:
	$(CARGO) clean
