#!/usr/bin/env bash
# `make arm64-env`: an emulated aarch64 Python with onnxruntime and numpy, for parity on ARM (runtimes/arm64).
# Usage: setup.sh HOST_PYTHON LINK
#   HOST_PYTHON: the project's python; its onnxruntime and numpy versions are the ones installed for aarch64.
#   LINK: the ignored build folder in the checkout (a symlink to the environment).
# The environment is built once per recipe under $ARM64_CACHE (default /var/cache/distilbert-deploy, outside the
# checkout) as arm64-env-<recipe hash>, staged and renamed into place, so a new clone reuses it and a new machine
# builds it from nothing. Root is needed once: apt (qemu-user-static binfmt-support debootstrap), binfmt_misc and
# debootstrap. Recipe and quirks: ../shared/ENVIRONMENT.md "ARM64 by emulation".
set -euo pipefail
HOST_PY=${1:?usage: setup.sh HOST_PYTHON LINK}
LINK=${2:?usage: setup.sh HOST_PYTHON LINK}
SUITE=trixie            # Debian 13: Python 3.13, which the aarch64 wheels below are chosen for
PY_TAG=3.13
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
CACHE=${ARM64_CACHE:-/var/cache/distilbert-deploy}
# Extra aarch64 wheels (e.g. openvino==2026.4.1) go in ARM64_EXTRA_WHEELS; they are part of the recipe.
EXTRA=${ARM64_EXTRA_WHEELS:-}

die() { echo "make arm64-env: error: $*" >&2; exit 2; }

read -r ORT_VERSION NUMPY_VERSION < <("$HOST_PY" -c \
  'import onnxruntime, numpy; print(onnxruntime.__version__, numpy.__version__)' 2>/dev/null) \
  || die "cannot read the onnxruntime and numpy versions from $HOST_PY. Fix: make venv first"
# Bump RECIPE_VERSION when a step below changes what the environment holds.
RECIPE_VERSION=1
RECIPE="v$RECIPE_VERSION debootstrap $SUITE minbase python3 | onnxruntime==$ORT_VERSION numpy==$NUMPY_VERSION${EXTRA:+ $EXTRA}"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-16)
ENV_DIR="$CACHE/arm64-env-$KEY"

link() { ln -sfn "$ENV_DIR" "$LINK"; echo "arm64 environment: $LINK -> $ENV_DIR ($RECIPE)"; }
if [ -f "$ENV_DIR/env.json" ] && command -v qemu-aarch64-static >/dev/null; then link; exit 0; fi

[ "$(id -u)" = 0 ] || die "building the aarch64 environment needs root once (apt-get install qemu-user-static \
binfmt-support debootstrap, binfmt_misc, debootstrap). Fix: run 'sudo make arm64-env', or set \
DISTILBERT_DEPLOY_ARM64_ENV to an environment built elsewhere"

if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v update-binfmts >/dev/null; then
  echo "installing qemu-user-static binfmt-support debootstrap (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support debootstrap >/dev/null
fi
# debootstrap's second stage runs aarch64 binaries in a chroot: that needs binfmt_misc
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
  || die "cannot mount binfmt_misc (a container without it?). Fix: run on a host or a privileged container"
update-binfmts --enable qemu-aarch64 2>/dev/null || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "binfmt for qemu-aarch64 is not registered. Fix: \
update-binfmts --enable qemu-aarch64 (package binfmt-support)"

mkdir -p "$CACHE"
STAGE=$(mktemp -d "$CACHE/.arm64-env-$KEY.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/root"
echo "debootstrap --arch=arm64 --variant=minbase --include=python3 $SUITE (3-5 minutes)"
debootstrap --arch=arm64 --variant=minbase --include=python3 "$SUITE" "$ROOT" "$MIRROR" >"$STAGE/debootstrap.log" 2>&1 \
  || { tail -20 "$STAGE/debootstrap.log" >&2; die "debootstrap failed (log above). Fix: check the network to $MIRROR"; }
# Without these the host's /sys shows through under qemu -L and 'import onnxruntime' dies with SIGSEGV.
mkdir -p "$ROOT/sys/devices/system/cpu"
: >"$ROOT/sys/devices/system/cpu/possible"
: >"$ROOT/sys/devices/system/cpu/present"
# pip inside the emulated system cannot verify TLS here: fetch the aarch64 wheels on the host.
echo "aarch64 wheels: onnxruntime==$ORT_VERSION numpy==$NUMPY_VERSION $EXTRA"
"$HOST_PY" -m pip install -q --disable-pip-version-check --no-warn-script-location --only-binary=:all: \
  --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --python-version "$PY_TAG" \
  --implementation cp --target "$ROOT/opt/pydeps" "onnxruntime==$ORT_VERSION" "numpy==$NUMPY_VERSION" $EXTRA
QEMU_VERSION=$(qemu-aarch64-static --version | head -1)
# (onnxruntime's cpuinfo cannot parse the empty files and says so on stderr; it falls back to the HWCAP flags)
FACTS=$(QEMU_CPU=neoverse-n1 PYTHONPATH="$ROOT/opt/pydeps" qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3" -c \
  'import json, platform, onnxruntime; print(json.dumps({"machine": platform.machine(), "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}))' \
  2>"$STAGE/smoke.log") || { cat "$STAGE/smoke.log" >&2; die "the emulated python could not import onnxruntime"; }
cat >"$STAGE/env.json" <<JSON
{"recipe": "$RECIPE", "key": "$KEY", "suite": "$SUITE", "qemu": "$QEMU_VERSION", "arm": $FACTS,
 "built": "$(date -u +%FT%TZ)", "root": "root", "pythonpath": "root/opt/pydeps"}
JSON
rm -f "$STAGE/debootstrap.log" "$STAGE/smoke.log"
chmod 755 "$STAGE"
mv -T "$STAGE" "$ENV_DIR" 2>/dev/null || [ -f "$ENV_DIR/env.json" ]  # another build may have won the race
link
