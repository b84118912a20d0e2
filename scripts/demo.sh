#!/usr/bin/env bash
# A guided tour of kairos-extensionsd and kairos-ext on a sandboxed system.
#
# scripts/sandbox.sh starts a private system bus (with our bus policy), real polkitd
# (with our actions) and the service in a private mount namespace: systemd-sysext really
# merges the sample extension into that namespace's /usr, and the host sees none of it.
# Runs to completion without input and stops everything it started. Needs root.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
export KAIROS_SANDBOX=${KAIROS_SANDBOX:-/tmp/kairos-ext-demo}
kx="$here/target/debug/kairos-ext"
work=$(mktemp -d /tmp/kairos-ext-demo-work.XXXXXX)
cleanup() {
  [ -n "${monitor_pid:-}" ] && kill "$monitor_pid" 2>/dev/null || true
  "$here/scripts/sandbox.sh" stop
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

# A sample extension: one script in /usr/bin and the release file that names it.
mkdir -p "$work/tree/usr/bin" "$work/tree/usr/lib/extension-release.d"
printf '#!/bin/sh\necho "Hello from the hello-kairos system extension"\n' > "$work/tree/usr/bin/hello-kairos"
chmod 0755 "$work/tree/usr/bin/hello-kairos"
printf 'ID=_any\nSYSEXT_VERSION_ID=1.0.0\nSYSEXT_SCOPE=system\n' \
  > "$work/tree/usr/lib/extension-release.d/extension-release.hello-kairos"
mksquashfs "$work/tree" "$work/hello-kairos.raw" -all-root -noappend -quiet >/dev/null
chmod 0755 "$work" && chmod 0644 "$work/hello-kairos.raw"

say "Starting the sandbox: private bus, polkitd, kairos-extensionsd"
"$here/scripts/sandbox.sh" start >/dev/null
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$KAIROS_SANDBOX/bus.sock"
service_pid=$(cat "$KAIROS_SANDBOX/service.pid")
in_sandbox() { nsenter -t "$service_pid" -m -- "$@"; }

"$kx" monitor > "$work/monitor.log" 2>/dev/null &
monitor_pid=$!
sleep 0.3

say "The service"
run "$kx" status
run busctl --system call org.kairos.Extensions1 /org/kairos/Extensions1 org.kairos.Extensions1.Manager ListExtensions

say "Install, enable for every boot, and merge now (as root)"
run "$kx" install "$work/hello-kairos.raw" --enable common --now
run "$kx" list
printf '\033[2m$ hello-kairos   # inside the sandboxed system\033[0m\n'
in_sandbox hello-kairos
printf '\033[2m$ hello-kairos   # on the host\033[0m\n'
command -v hello-kairos >/dev/null || echo "(not here: the host is untouched)"

say "Anyone may read; changes need polkit"
run as_nobody "$kx" list
printf '\033[2m$ kairos-ext disable hello-kairos --common   # as nobody\033[0m\n'
as_nobody "$kx" --no-ask-password disable hello-kairos --common || true
echo 'polkit.addRule(function(a, s) { if (a.id.indexOf("org.kairos.extensions1.") == 0 && s.user == "nobody") return polkit.Result.YES; });' \
  > "$KAIROS_SANDBOX/rules/50-demo.rules"
chmod 0644 "$KAIROS_SANDBOX/rules/50-demo.rules"
echo "(a polkit rule now grants nobody the org.kairos.extensions1.* actions)"
sleep 2
run as_nobody "$kx" disable hello-kairos --common --now
printf '\033[2m$ hello-kairos   # inside the sandboxed system\033[0m\n'
in_sandbox hello-kairos 2>/dev/null || echo "(gone: unmerged)"

say "Bad input is refused precisely and changes nothing"
printf '\033[2m$ kairos-ext enable ../etc --common\033[0m\n'
"$kx" enable ../etc --common 2>&1 || true
printf '\033[2m$ busctl ... Enable sst hello-kairos sometimes 0\033[0m\n'
busctl --system call org.kairos.Extensions1 /org/kairos/Extensions1 org.kairos.Extensions1.Manager Enable sst hello-kairos sometimes 0 2>&1 || true

say "Remove"
run "$kx" remove hello-kairos --now
run "$kx" list

sleep 0.5
kill "$monitor_pid" 2>/dev/null || true
wait "$monitor_pid" 2>/dev/null || true
monitor_pid=
say "What kairos-ext monitor saw meanwhile"
grep -v '^PropertiesChanged /org/kairos/Extensions1/job' "$work/monitor.log" || true

say "Done; stopping the sandbox"
