#!/usr/bin/env bash
# Install benchmark (make bench): a 512 MiB extension in a gzip layer from a local
# docker-registry, installed through the sandboxed service, side by side with
# `skopeo copy docker://... dir:` of the same image (which does less: no decompression,
# no validation). Prints wall times, the service's peak RSS during the install, and our
# throughput next to this machine's own sha256 and disk-write rates. Release builds.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${BENCH_SIZE_MIB:-512}
work=$(mktemp -d /tmp/kairos-ext-bench.XXXXXX)
# polkitd drops to its own user and must reach the sandbox inside.
chmod 0755 "$work"
export KAIROS_SANDBOX="$work/sandbox"
bin=${CARGO_TARGET_DIR:-$here/target}/release
export KAIROS_EXTENSIONSD_BIN="$bin/kairos-extensionsd"
kx="$bin/kairos-ext"
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  "$here/scripts/sandbox.sh" stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
rate() { awk -v mib="$1" -v s="$2" 'BEGIN { printf "%.1f", mib / s }'; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo "== preparing a ${size_mib} MiB extension image"
mkdir -p "$work/tree/usr/lib/extension-release.d" "$work/tree/usr/share/bench"
printf 'ID=_any\n' > "$work/tree/usr/lib/extension-release.d/extension-release.bench"
head -c "$((size_mib << 20))" /dev/urandom > "$work/tree/usr/share/bench/payload"
mksquashfs "$work/tree" "$work/bench.raw" -all-root -noappend -quiet -noI -noD -noF -noX >/dev/null
image_mib=$(( $(stat -c %s "$work/bench.raw") >> 20 ))

echo "== building an OCI layout (tar + gzip -1) and pushing it to a local docker-registry"
layout="$work/layout"; mkdir -p "$layout/blobs/sha256"
(cd "$work" && tar --owner=0 --group=0 -cf layer.tar bench.raw)
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -1 -c "$work/layer.tar" > "$work/layer.tar.gz"; rm "$work/layer.tar"
put() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$layout/blobs/sha256/$d"; echo "$d $(stat -c %s "$1")"; }
read -r layer_digest layer_size < <(put "$work/layer.tar.gz")
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' "$diff_id" > "$work/config.json"
read -r config_digest config_size < <(put "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$work/manifest.json"
read -r manifest_digest manifest_size < <(put "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$manifest_digest" "$manifest_size" > "$layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'version: 0.1\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' "$work/registry" "$port" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:v1" "docker://127.0.0.1:$port/bench:v1"
rm -rf "$layout" "$work/tree"

echo "== this machine's own rates"
sync; t0=$(now); sha256sum "$work/bench.raw" >/dev/null; t1=$(now)
sha_rate=$(rate "$image_mib" "$(seconds "$t0" "$t1")")
t0=$(now); dd if=/dev/zero of="$work/ddtest" bs=1M count="$image_mib" conv=fsync status=none; t1=$(now)
disk_rate=$(rate "$image_mib" "$(seconds "$t0" "$t1")"); rm -f "$work/ddtest" "$work/bench.raw"

echo "== skopeo copy docker://... dir: (download and digest check only)"
sync; t0=$(now)
skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/bench:v1" "dir:$work/skopeo"
t1=$(now); skopeo_s=$(seconds "$t0" "$t1"); rm -rf "$work/skopeo"

echo "== kairos-ext install oci://... through the sandboxed service"
KAIROS_SANDBOX_CONFIG="insecure_registries = [\"127.0.0.1:$port\"]" "$here/scripts/sandbox.sh" start >/dev/null
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$KAIROS_SANDBOX/bus.sock"
pid=$(cat "$KAIROS_SANDBOX/service.pid")
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
sync; t0=$(now)
"$kx" --no-ask-password install "oci://127.0.0.1:$port/bench:v1" </dev/null >/dev/null
t1=$(now); ours_s=$(seconds "$t0" "$t1")
peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

cat <<REPORT

Install of a ${image_mib} MiB extension (gzip layer) from a local registry
  skopeo copy docker:// dir:   ${skopeo_s} s
  kairos-ext install oci://    ${ours_s} s  ($(rate "$image_mib" "$ours_s") MiB/s)
  ratio ours/skopeo            $(awk -v a="$ours_s" -v b="$skopeo_s" 'BEGIN { printf "%.2f", a / b }')
  service RSS                  $((rss_before / 1024)) MiB idle, $((peak_kib / 1024)) MiB peak (VmHWM), $((rss_after / 1024)) MiB after
  this machine: sha256sum      ${sha_rate} MiB/s
  this machine: dd + fsync     ${disk_rate} MiB/s
REPORT
