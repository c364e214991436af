#!/usr/bin/env bash
# Builds the static Linux x64 binary and assembles the function app: host.json, one folder
# per function (functions/app/*/function.json), the binary named as host.json's
# defaultExecutablePath (`flowforge`) with its exec bit, and a zip of it all that keeps
# the exec bit (zip deploy does not add it).
#
#   deploy/package.sh                           # static release build, into deploy/out/
#   deploy/package.sh --binary PATH --out DIR   # package an existing binary
#
# The binary is a static x86_64-unknown-linux-musl build with rustls (no OpenSSL in the
# dependency tree): custom-handler apps get an empty linuxFxVersion and the platform may
# pick a Debian 11 image (glibc 2.31, libssl1.1), where a glibc build that needs
# GLIBC_2.34 or libssl.so.3 does not start. It needs the musl target (rust-toolchain.toml
# lists it) and Debian's musl-tools for the C parts (mimalloc, ring, zstd).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
binary=""
out="$root/deploy/out"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/flowforge-target}"
  target=x86_64-unknown-linux-musl
  command -v musl-gcc >/dev/null || { echo "musl-gcc missing: apt-get install musl-tools" >&2; exit 1; }
  # rustup installs a toolchain file's targets only with the toolchain itself; a machine
  # whose 1.95.0 came without it needs the target added (rustup's own download server).
  if ! (cd "$root" && rustup target list --installed 2>/dev/null) | grep -qx "$target"; then
    (cd "$root" && rustup target add "$target" >&2) \
      || { echo "cannot install the $target target (rustup's download server)" >&2; exit 3; }
  fi
  (cd "$root" && CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --locked --target "$target" -p flowforge)
  binary="$CARGO_TARGET_DIR/$target/release/flowforge"
fi
app="$out/app"
rm -rf "$app" && mkdir -p "$app"
cp "$root/host.json" "$app/"
for dir in "$root"/functions/app/*/; do
  name=$(basename "$dir")
  mkdir -p "$app/$name"
  cp "$dir/function.json" "$app/$name/"
done
exe=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["customHandler"]["description"]["defaultExecutablePath"])' "$root/host.json")
cp "$binary" "$app/$exe"
# Debug info (line tables of a release build) is most of the file; the app does not need it.
if command -v strip >/dev/null; then strip --strip-debug "$app/$exe"; fi
chmod 755 "$app/$exe"
python3 - "$app" "$out/flowforge-app.zip" <<'PY'
import os, sys, zipfile
app, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
    for folder, _, files in os.walk(app):
        for name in sorted(files):
            path = os.path.join(folder, name)
            info = zipfile.ZipInfo.from_file(path, os.path.relpath(path, app))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (os.stat(path).st_mode & 0xFFFF) << 16  # keeps the exec bit
            with open(path, "rb") as f:
                z.writestr(info, f.read())
print(f"packaged {app} and {target}")
PY
