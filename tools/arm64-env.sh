#!/usr/bin/env bash
# `make arm64-env`: an emulated aarch64 Python with onnxruntime and numpy, for parity on ARM (runtimes/arm64; this builder sits in tools/, outside the runtime package).
# Usage: arm64-env.sh HOST_PYTHON LINK
#   HOST_PYTHON: the project's python; its onnxruntime and numpy versions are the ones installed for aarch64.
#   LINK: the ignored build folder in the checkout (a symlink to the environment).
# No root needed, and the same steps run as root: apt-get (with a private state, so the host's package database,
# sources and lock are never touched) downloads python3's dependency closure for Debian trixie arm64, `dpkg-deb -x`
# unpacks each .deb into the root filesystem (no maintainer scripts: `python3 -I` with the wheels on sys.path needs
# none), and qemu-aarch64-static comes out of the bookworm qemu-user-static .deb for this host into the environment
# (bin/), where runtimes/arm64/env.py finds it through env.json. The runtime calls it as `qemu -L ROOT python3`:
# no binfmt_misc, no chroot. Needs apt-get, dpkg-deb, debian-archive-keyring and the network to $ARM64_MIRROR.
# The environment is built once per recipe as arm64-env-<recipe hash>, staged and renamed into place, under
# $ARM64_CACHE when set; otherwise under /var/cache/distilbert-deploy where that is writable (root), else under
# ${XDG_CACHE_HOME:-~/.cache}/distilbert-deploy. An environment already built in either default place is reused.
# So a new clone reuses it and a new machine builds it from nothing. Recipe and quirks: ../shared/ENVIRONMENT.md
# "ARM64 by emulation".
set -euo pipefail
HOST_PY=${1:?usage: arm64-env.sh HOST_PYTHON LINK}
LINK=${2:?usage: arm64-env.sh HOST_PYTHON LINK}
SUITE=trixie            # Debian 13: Python 3.13, which the aarch64 wheels below are chosen for
PY_TAG=3.13
# python3's closure lacks libstdc++6, which the onnxruntime wheel links against (numpy's wheel bundles its own libs)
ARM_PACKAGES="python3 libstdc++6"
QEMU_SUITE=bookworm     # qemu-user-static 7.2, static: runs on any Linux of this CPU architecture
QEMU_BIN=bin/qemu-aarch64-static  # inside the environment; env.json records it
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
KEYRING=${ARM64_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
SYSTEM_CACHE=/var/cache/distilbert-deploy
USER_CACHE=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/distilbert-deploy
# Extra aarch64 wheels (e.g. openvino==2026.4.1) go in ARM64_EXTRA_WHEELS; they are part of the recipe.
EXTRA=${ARM64_EXTRA_WHEELS:-}

die() { echo "make arm64-env: error: $*" >&2; exit 2; }

read -r ORT_VERSION NUMPY_VERSION < <("$HOST_PY" -c \
  'import onnxruntime, numpy; print(onnxruntime.__version__, numpy.__version__)' 2>/dev/null) \
  || die "cannot read the onnxruntime and numpy versions from $HOST_PY. Fix: make venv first"
for tool in apt-get dpkg-deb dpkg tar sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing: the environment is built from Debian packages with \
apt-get and dpkg-deb (no root needed). Fix: build it on a Debian or Ubuntu host, or set DISTILBERT_DEPLOY_ARM64_ENV \
to an environment built elsewhere"
done
HOST_ARCH=$(dpkg --print-architecture)
# Bump RECIPE_VERSION when a step below changes what the environment holds.
RECIPE_VERSION=2
RECIPE="v$RECIPE_VERSION debs $SUITE arm64 $ARM_PACKAGES | qemu-user-static $QEMU_SUITE $HOST_ARCH \
| onnxruntime==$ORT_VERSION numpy==$NUMPY_VERSION${EXTRA:+ $EXTRA}"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-16)
NAME=arm64-env-$KEY

if [ -n "${ARM64_CACHE:-}" ]; then CACHES=("$ARM64_CACHE"); else CACHES=("$SYSTEM_CACHE" "$USER_CACHE"); fi
link() { ln -sfn "$ENV_DIR" "$LINK"; echo "arm64 environment: $LINK -> $ENV_DIR ($RECIPE)"; }
for c in "${CACHES[@]}"; do
  ENV_DIR="$c/$NAME"
  if [ -f "$ENV_DIR/env.json" ] && [ -x "$ENV_DIR/$QEMU_BIN" ]; then link; exit 0; fi
done
CACHE=
for c in "${CACHES[@]}"; do
  if mkdir -p "$c" 2>/dev/null && [ -w "$c" ]; then CACHE=$c; break; fi
done
[ -n "$CACHE" ] || die "cannot write the build cache ${CACHES[*]} as $(id -un). Fix: set ARM64_CACHE to a directory \
you can write (unset, it is $SYSTEM_CACHE where writable, else \${XDG_CACHE_HOME:-~/.cache}/distilbert-deploy)"
[ -r "$KEYRING" ] || die "no Debian archive keyring at $KEYRING to verify the packages. Fix: apt-get install \
debian-archive-keyring, or set ARM64_KEYRING to a copy of it"
ENV_DIR="$CACHE/$NAME"

STAGE=$(mktemp -d "$CACHE/.$NAME.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/root"
LOG="$STAGE/build.log"

# apt-get with a private state under $1 for architecture $2: its own sources, lists, cache and (empty) dpkg status,
# no lock, no sandbox user switch; the host's configuration (proxy, ...) still applies, its packages do not.
apt_private() {
  local dir=$1 arch=$2; shift 2
  apt-get -q -o APT::Architecture="$arch" -o APT::Architectures="$arch" -o Dir::State="$dir" \
    -o Dir::State::Lists="$dir/lists" -o Dir::State::status="$dir/status" \
    -o Dir::State::extended_states="$dir/extended_states" -o Dir::Cache="$dir/cache" \
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Dir::Etc::SourceList="$dir/sources.list" \
    -o Dir::Etc::SourceParts="$dir/none" -o Dir::Etc::Preferences="$dir/none" \
    -o Dir::Etc::PreferencesParts="$dir/none" -o Dir::Log="$dir/log" -o Debug::NoLocking=1 \
    -o APT::Sandbox::User="$(id -un)" -o Acquire::Languages=none -o APT::Install-Recommends=0 \
    -o APT::Install-Suggests=0 -o APT::Default-Release= -o APT::Get::AllowUnauthenticated=0 "$@"
}
apt_state() {  # apt_state DIR ARCH SUITE...: a private state for ARCH with the mirror's SUITEs, and its lists
  local dir=$1 arch=$2; shift 2
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/none" "$dir/log"
  : >"$dir/status"
  for s in "$@"; do echo "deb [arch=$arch signed-by=$KEYRING] $MIRROR $s main"; done >"$dir/sources.list"
  apt_private "$dir" "$arch" update >>"$LOG" 2>&1 \
    || { tail -20 "$LOG" >&2; die "apt-get update for $arch ($*) failed (log above). Fix: check the network to $MIRROR"; }
}

echo "Debian $SUITE arm64: $ARM_PACKAGES and their dependencies (apt-get download + dpkg-deb -x, no root)"
apt_state "$STAGE/apt-arm64" arm64 "$SUITE"
apt_private "$STAGE/apt-arm64" arm64 install --download-only -y $ARM_PACKAGES >>"$LOG" 2>&1 \
  || { tail -20 "$LOG" >&2; die "downloading $ARM_PACKAGES for arm64 failed (log above)"; }
mkdir -p "$ROOT"
for deb in "$STAGE"/apt-arm64/cache/archives/*.deb; do
  dpkg-deb -x "$deb" "$ROOT" || die "dpkg-deb -x $deb failed"
  dpkg-deb -W --showformat='${Package} ${Version} ${Architecture}\n' "$deb" >>"$STAGE/packages.txt"
done
# Merged /usr, as debootstrap makes it: the packages ship /usr only, and python3's ELF interpreter is
# /lib/ld-linux-aarch64.so.1.
for d in bin sbin lib; do
  if [ -d "$ROOT/$d" ] && [ ! -L "$ROOT/$d" ]; then
    mkdir -p "$ROOT/usr/$d"; cp -a "$ROOT/$d/." "$ROOT/usr/$d/"; rm -rf "${ROOT:?}/$d"
  fi
  ln -sfn "usr/$d" "$ROOT/$d"
done
# An absolute symlink (sitecustomize.py -> /etc/python3.13/...) would resolve on the HOST when the emulated process
# opens it by its host path: point each into the root filesystem instead.
find "$ROOT" -type l -lname '/*' -print0 | while IFS= read -r -d '' l; do
  ln -sfn "$(realpath -s -m --relative-to="$(dirname "$l")" "$ROOT$(readlink "$l")")" "$l"
done
# No ldconfig ran: an empty cache keeps the aarch64 loader from reading the host's /etc/ld.so.cache through
# qemu -L; it then searches its default (multiarch) directories.
mkdir -p "$ROOT/etc"
: >"$ROOT/etc/ld.so.cache"
# Without these the host's /sys shows through under qemu -L and 'import onnxruntime' dies with SIGSEGV.
mkdir -p "$ROOT/sys/devices/system/cpu"
: >"$ROOT/sys/devices/system/cpu/possible"
: >"$ROOT/sys/devices/system/cpu/present"

echo "qemu-aarch64-static from Debian $QEMU_SUITE qemu-user-static ($HOST_ARCH), into the environment"
apt_state "$STAGE/apt-qemu" "$HOST_ARCH" "$QEMU_SUITE" "$QEMU_SUITE-updates"
(cd "$STAGE/apt-qemu" && apt_private "$STAGE/apt-qemu" "$HOST_ARCH" download qemu-user-static) >>"$LOG" 2>&1 \
  || { tail -20 "$LOG" >&2; die "downloading qemu-user-static ($HOST_ARCH, $QEMU_SUITE) failed (log above)"; }
QEMU_DEB=$(ls "$STAGE"/apt-qemu/qemu-user-static_*.deb)
mkdir -p "$STAGE/bin"
dpkg-deb --fsys-tarfile "$QEMU_DEB" | tar -xOf - "./usr/bin/qemu-aarch64-static" >"$STAGE/$QEMU_BIN"
chmod 755 "$STAGE/$QEMU_BIN"
QEMU_VERSION=$("$STAGE/$QEMU_BIN" --version | head -1) \
  || die "the qemu-aarch64-static of $QEMU_DEB does not run on this host"
dpkg-deb -W --showformat='${Package} ${Version} ${Architecture}\n' "$QEMU_DEB" >>"$STAGE/packages.txt"
rm -rf "$STAGE/apt-arm64" "$STAGE/apt-qemu"

# pip inside the emulated system cannot verify TLS here: fetch the aarch64 wheels on the host.
echo "aarch64 wheels: onnxruntime==$ORT_VERSION numpy==$NUMPY_VERSION $EXTRA"
"$HOST_PY" -m pip install -q --disable-pip-version-check --no-warn-script-location --only-binary=:all: \
  --no-compile --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --python-version "$PY_TAG" \
  --implementation cp --target "$ROOT/opt/pydeps" "onnxruntime==$ORT_VERSION" "numpy==$NUMPY_VERSION" $EXTRA
arm_python() { env -u PYTHONPATH -u PYTHONHOME QEMU_CPU=neoverse-n1 "$STAGE/$QEMU_BIN" -L "$ROOT" "$ROOT/usr/bin/python3" -I "$@"; }
# The bytecode no maintainer script or host pip (another Python) wrote: compiled once here by the emulated 3.13, so
# a worker started by a user who cannot write the environment does not recompile its imports (~4 s a start).
# Two processes side by side: compileall -j would spawn aarch64 children, which needs binfmt_misc. A file that does
# not compile is only slower to import (and the smoke import below still has to pass): a warning, not a failure.
echo "byte-compiling the stdlib and the wheels under emulation (under a minute)"
arm_python -m compileall -q "$ROOT/usr/lib/python$PY_TAG" >"$STAGE/compile-stdlib.log" 2>&1 & STDLIB_PID=$!
arm_python -m compileall -q "$ROOT/opt/pydeps" >"$STAGE/compile-pydeps.log" 2>&1 \
  || { tail -5 "$STAGE/compile-pydeps.log" >&2; echo "make arm64-env: warning: some wheel files did not byte-compile" >&2; }
wait "$STDLIB_PID" \
  || { tail -5 "$STAGE/compile-stdlib.log" >&2; echo "make arm64-env: warning: some stdlib files did not byte-compile" >&2; }
rm -f "$STAGE/compile-stdlib.log" "$STAGE/compile-pydeps.log"
# The smoke import runs as the runtime does: python3 -I, the wheels put on sys.path by their path in ROOT.
# (onnxruntime's cpuinfo cannot parse the empty files and says so on stderr; it falls back to the HWCAP flags)
FACTS=$(arm_python -c \
  'import sys; sys.path.insert(0, "/opt/pydeps"); import json, platform, numpy, onnxruntime; print(json.dumps({"machine": platform.machine(), "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__}))' \
  2>"$STAGE/smoke.log") || { cat "$STAGE/smoke.log" >&2; die "the emulated python could not import onnxruntime"; }
cat >"$STAGE/env.json" <<JSON
{"recipe": "$RECIPE", "key": "$KEY", "suite": "$SUITE", "qemu": "$QEMU_VERSION", "qemu_bin": "$QEMU_BIN",
 "arm": $FACTS, "built": "$(date -u +%FT%TZ)", "root": "root", "pythonpath": "root/opt/pydeps",
 "packages": "packages.txt"}
JSON
rm -f "$LOG" "$STAGE/smoke.log"
chmod 755 "$STAGE"
mv -T "$STAGE" "$ENV_DIR" 2>/dev/null || [ -f "$ENV_DIR/env.json" ]  # another build may have won the race
link
