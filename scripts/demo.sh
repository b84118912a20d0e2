#!/usr/bin/env bash
# A guided tour of kairos-ext on a sandboxed system.
#
# Everything happens in a private mount namespace with its own /run and /var/lib, so
# systemd-sysext really merges an extension into /usr, and the host never sees any of it.
# It needs root (for the namespace and loop devices), runs without input and cleans up.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin="${KAIROS_EXT_BIN:-$here/target/debug/kairos-ext}"
[ -x "$bin" ] || { echo "build first: cargo build --workspace --bins" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "the demo needs root (private mount namespaces, loop devices)" >&2; exit 1; }

work=$(mktemp -d /tmp/kairos-ext-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A sample extension: one script in /usr/bin and the release file that names it.
mkdir -p "$work/tree/usr/bin" "$work/tree/usr/lib/extension-release.d"
cat > "$work/tree/usr/bin/hello-kairos" <<'SH'
#!/bin/sh
echo "Hello from the hello-kairos system extension"
SH
chmod 0755 "$work/tree/usr/bin/hello-kairos"
printf 'ID=_any\nSYSEXT_VERSION_ID=1.0.0\nSYSEXT_SCOPE=system\n' \
  > "$work/tree/usr/lib/extension-release.d/extension-release.hello-kairos"
mksquashfs "$work/tree" "$work/hello-kairos.raw" -all-root -noappend -quiet >/dev/null

mkdir -p "$work/imageroot/etc"
cp /etc/os-release "$work/imageroot/etc/os-release"

export KAIROS_EXT="$bin" WORK="$work"
unshare -m --propagation private bash -euo pipefail -c '
  mount --make-rshared /
  mount -t tmpfs tmpfs /run && mount --make-rshared /run
  mount -t tmpfs tmpfs /var/lib
  mkdir -p /run/extensions

  step() { printf "\n\033[1m$ %s\033[0m\n" "$*"; "$@"; }

  echo "== On the (sandboxed) running system, as root, with --root / =="
  step "$KAIROS_EXT" --root / install "$WORK/hello-kairos.raw" --enable common --now
  step hello-kairos
  step "$KAIROS_EXT" --root / list
  step cat /usr/.systemd-sysext/extensions
  step "$KAIROS_EXT" --root / disable hello-kairos --common --now
  printf "\n$ hello-kairos\n"; hello-kairos 2>&1 || echo "(gone: unmerged from /usr)"
  step "$KAIROS_EXT" --root / remove hello-kairos
  step "$KAIROS_EXT" --root / list

  echo
  echo "== Bad input changes nothing =="
  printf "ID=fedora\nVERSION_ID=40\n" > "$WORK/tree/usr/lib/extension-release.d/extension-release.hello-kairos"
  mksquashfs "$WORK/tree" "$WORK/fedora.raw" -all-root -noappend -quiet >/dev/null
  printf "\n$ kairos-ext --root / install fedora.raw\n"
  "$KAIROS_EXT" --root / install "$WORK/fedora.raw" || echo "(refused, exit $?)"

  echo
  echo "== Preparing an image root offline (what an image builder does) =="
  step "$KAIROS_EXT" --root "$WORK/imageroot" install "$WORK/hello-kairos.raw" --enable active --enable passive
  step ls -l "$WORK/imageroot/var/lib/kairos/extensions/active"
  printf "\n$ kairos-ext --root imageroot enable hello-kairos --common --now\n"
  "$KAIROS_EXT" --root "$WORK/imageroot" enable hello-kairos --common --now || echo "(refused, exit $?)"
'
echo
echo "Demo finished; the sandbox is gone and the host was not touched."
