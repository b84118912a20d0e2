#!/usr/bin/env bash
# Read-path benchmark (make bench, after scripts/bench.sh): with N = 10, 100, 1 000 and
# 10 000 extensions in the store, the service on a private system bus next to real
# polkitd, measured side by side in one run by tests/src/bin/kx-bench.rs (a zbus client):
# ListExtensions against polkitd's property Get, GetManagedObjects, `kairos-ext list`,
# Describe of a signed verity image twice (and what the service read for each), cold
# start, RSS idle and after a burst of 1 000 calls, and Enable + Disable. Release builds.
#
# BENCH_SIZES=10,100 limits the sizes; BENCH_JSON=FILE keeps every figure as JSON; the
# service gets the Environment= of BENCH_UNIT (default: our systemd unit).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$here/target}/release
sizes=${BENCH_SIZES:-10,100,1000,10000}
json=${BENCH_JSON:-/tmp/kairos-ext-bench-reads.json}
unit=${BENCH_UNIT:-$here/systemd/kairos-extensionsd.service.in}
for b in kairos-extensionsd kairos-ext kx-bench; do
  [ -x "$bin/$b" ] || { echo "bench-reads: $bin/$b is missing (make bench builds it)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/kairos-ext-bench-reads.XXXXXX)
# polkitd and the service's namespace read from here.
chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT

echo "== a signed verity image (systemd-repart, throwaway key) with 8 MiB of data"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=kairos-bench -days 2 \
  -keyout "$work/bench.key" -out "$work/bench.crt" 2>/dev/null
mkdir -p "$work/trust" "$work/defs" "$work/tree/usr/lib/extension-release.d" "$work/tree/usr/share/bench"
cp "$work/bench.crt" "$work/trust/"
printf 'ID=_any\nSYSEXT_VERSION_ID=1.0\n' > "$work/tree/usr/lib/extension-release.d/extension-release.bench-signed"
head -c 8M /dev/urandom > "$work/tree/usr/share/bench/payload"
printf '[Partition]\nType=root\nFormat=squashfs\nCopyFiles=/usr:/usr\nVerity=data\nVerityMatchKey=root\nMinimize=best\n' > "$work/defs/10-root.conf"
printf '[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\nMinimize=best\n' > "$work/defs/20-verity.conf"
printf '[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n' > "$work/defs/30-sig.conf"
systemd-repart --empty=create --size=auto --dry-run=no --definitions="$work/defs" --root="$work/tree" \
  --private-key="$work/bench.key" --certificate="$work/bench.crt" "$work/signed.raw" >/dev/null 2>&1
rm -rf "$work/tree"

echo "== measuring N = $sizes"
"$bin/kx-bench" --sizes "$sizes" --daemon "$bin/kairos-extensionsd" --cli "$bin/kairos-ext" \
  --signed "$work/signed.raw" --trust "$work/trust" --unit "$unit" \
  --logs "$work" --json "$json" || {
  echo "bench-reads: failed; the service's logs:" >&2
  tail -n 20 "$work"/service-*.log >&2 2>/dev/null || true
  exit 1
}
echo "(every figure: $json)"
