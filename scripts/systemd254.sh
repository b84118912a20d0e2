#!/usr/bin/env bash
# systemd 254 beside the host's systemd, for tests that compare verdicts across versions.
#
# Downloads systemd, libsystemd-shared and systemd-container from Debian's
# bookworm-backports (through the machine's own Debian mirror) and unpacks them with
# `dpkg -x`: nothing is installed, the host's systemd stays as it is. Run the binaries with
# LD_LIBRARY_PATH=<dir>/root/usr/lib/x86_64-linux-gnu/systemd (tests/src/systemd254.rs
# does). Idempotent: a finished unpack is left alone.
#
#   scripts/systemd254.sh [DIR]    default DIR: ${CARGO_TARGET_DIR:-target}/systemd254
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-${CARGO_TARGET_DIR:-$here/target}/systemd254}
libdir=usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)/systemd

die() { echo "systemd254: $*" >&2; exit 1; }

version_of() {
  LD_LIBRARY_PATH="$1/$libdir" "$1/usr/bin/systemd-sysext" --version 2>/dev/null | awk 'NR==1{print $2}'
}

if [ -x "$dest/root/usr/bin/systemd-sysext" ] && [ "$(version_of "$dest/root")" = 254 ]; then
  exit 0
fi

sources=/etc/apt/sources.list.d/debian.sources
uri=$(awk '/^URIs:/{print $2; exit}' "$sources" 2>/dev/null || true)
[ -n "$uri" ] || uri=http://deb.debian.org/debian
mkdir -p "$dest/lists/partial" "$dest/dl"
echo "deb $uri bookworm-backports main" > "$dest/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$dest/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$dest/lists" -o "Dir::Cache=$dest/cache"
          -o "APT::Sandbox::User=root" -qq)
mkdir -p "$dest/cache/archives/partial"
apt-get "${apt_opts[@]}" update || die "apt-get update of bookworm-backports failed"
rm -f "$dest/dl"/*.deb
(cd "$dest/dl" && apt-get "${apt_opts[@]}" download \
  systemd/bookworm-backports libsystemd-shared/bookworm-backports systemd-container/bookworm-backports) ||
  die "downloading the systemd 254 packages failed"

rm -rf "$dest/root.new"
mkdir -p "$dest/root.new"
for deb in "$dest/dl"/*.deb; do dpkg -x "$deb" "$dest/root.new"; done
# Debian's packages ship the binaries under /usr/bin or /bin depending on the release.
for tool in systemd-sysext systemd-dissect; do
  if [ ! -e "$dest/root.new/usr/bin/$tool" ] && [ -e "$dest/root.new/bin/$tool" ]; then
    ln -s "../../bin/$tool" "$dest/root.new/usr/bin/$tool"
  fi
done
version=$(version_of "$dest/root.new")
[ "$version" = 254 ] || die "unpacked systemd reports version '${version:-none}', not 254"
rm -rf "$dest/root"
mv "$dest/root.new" "$dest/root"
echo "systemd254: systemd $version unpacked in $dest/root"
