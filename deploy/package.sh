#!/usr/bin/env bash
# Builds the Linux x64 binary and assembles the function app: host.json, one folder per
# function (functions/app/*/function.json), the binary named as host.json's
# defaultExecutablePath (`flowforge`) with its exec bit, and a zip of it all that keeps
# the exec bit (zip deploy does not add it).
#
#   deploy/package.sh                       # release build, into deploy/out/
#   deploy/package.sh --binary PATH --out DIR   # package an existing binary
#
# The binary is a glibc (x86_64-unknown-linux-gnu) build: the Azure SDK crates use
# native-tls (OpenSSL) here, which a static musl build would have to vendor. The Functions
# Linux images ship the glibc and OpenSSL it needs.
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
  (cd "$root" && cargo build --release --locked -p flowforge)
  binary="$CARGO_TARGET_DIR/release/flowforge"
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
