#!/usr/bin/env bash
# A sandboxed system for kairos-extensionsd: a private system bus carrying our bus
# policy, real polkitd with our actions, and the service in a private mount namespace
# with its own /run and /var/lib, so real merges happen without touching the host.
#
#   scripts/sandbox.sh start   start everything, print how to use it
#   scripts/sandbox.sh env     print the environment for kairos-ext and busctl
#   scripts/sandbox.sh stop    stop everything and remove the sandbox
#
# The sandbox lives in $KAIROS_SANDBOX (default /tmp/kairos-ext-sandbox). Extra lines for
# the service's configuration can be given in $KAIROS_SANDBOX_CONFIG. Needs root.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
box=${KAIROS_SANDBOX:-/tmp/kairos-ext-sandbox}
daemon_bin=${KAIROS_EXTENSIONSD_BIN:-$here/target/debug/kairos-extensionsd}

die() { echo "sandbox: $*" >&2; exit 1; }

wait_for_name() {
  local name=$1
  for _ in $(seq 1 100); do
    if DBUS_SYSTEM_BUS_ADDRESS="unix:path=$box/bus.sock" busctl --system status "$name" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "$name did not appear on the bus (logs in $box/*.log)"
}

start() {
  [ "$(id -u)" = 0 ] || die "needs root (private mount namespaces, loop devices)"
  [ -x "$daemon_bin" ] || die "build first: cargo build --workspace --bins"
  [ -e "$box/pids" ] && die "already running in $box (scripts/sandbox.sh stop first)"
  mkdir -p "$box"/{system.d,actions,rules,run,varlib,etc}
  chmod 0755 "$box" "$box"/actions "$box"/rules

  sed -e "s|@SOCKET@|$box/bus.sock|" -e "s|@POLICY_DIR@|$box/system.d|" \
    "$here/tests/data/private-system-bus.conf.in" > "$box/bus.conf"
  # Our bus policy is what lets the service own its name and clients call it.
  cp "$here/systemd/org.kairos.Extensions1.conf" "$box/system.d/"
  cp /usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf "$box/system.d/"
  cp /usr/share/polkit-1/actions/*.policy "$box/actions/" 2>/dev/null || true
  cp "$here/polkit/org.kairos.Extensions1.policy" "$box/actions/"
  chmod -R a+rX "$box/actions" "$box/rules"
  printf 'idle_exit_sec = 0\n%s\n' "${KAIROS_SANDBOX_CONFIG:-}" > "$box/etc/extensions.toml"

  : > "$box/pids"
  dbus-daemon --config-file="$box/bus.conf" --nofork --print-address >"$box/bus.address" 2>"$box/dbus.log" &
  echo $! >> "$box/pids"
  for _ in $(seq 1 50); do [ -S "$box/bus.sock" ] && break; sleep 0.1; done
  export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$box/bus.sock"

  unshare -m --propagation private sh -c "
    mount --bind '$box/actions' /usr/share/polkit-1/actions &&
    mount --bind '$box/rules' /etc/polkit-1/rules.d &&
    exec /usr/lib/polkit-1/polkitd --no-debug" >"$box/polkitd.log" 2>&1 &
  echo $! >> "$box/pids"
  wait_for_name org.freedesktop.PolicyKit1

  unshare -m --propagation private sh -c "
    mount --make-rshared / &&
    mount --bind '$box/run' /run && mount --make-rshared /run &&
    mount --bind '$box/varlib' /var/lib &&
    mkdir -p /run/extensions &&
    exec '$daemon_bin' --config '$box/etc/extensions.toml'" >"$box/service.log" 2>&1 &
  echo $! > "$box/service.pid"
  cat "$box/service.pid" >> "$box/pids"
  wait_for_name org.kairos.Extensions1
}

print_env() {
  cat <<ENV
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$box/bus.sock
# kairos-ext and busctl --system now talk to the sandboxed service, e.g.
#   $here/target/debug/kairos-ext status
#   busctl --system call org.kairos.Extensions1 /org/kairos/Extensions1 org.kairos.Extensions1.Manager ListExtensions
# Look at the sandboxed system (where extensions are merged):
#   nsenter -t $(cat "$box/service.pid" 2>/dev/null || echo PID) -m -- ls /usr/bin
# Logs: $box/service.log, $box/polkitd.log, $box/dbus.log
# Stop: $here/scripts/sandbox.sh stop
ENV
}

stop() {
  if [ -f "$box/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$box/pids"
    sleep 0.3
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done < "$box/pids"
  fi
  rm -rf "$box"
}

case "${1:-}" in
  start) start; print_env ;;
  env) print_env ;;
  stop) stop ;;
  *) die "usage: $0 start|env|stop" ;;
esac
