#!/usr/bin/env bash
# Install GPAW (PBE/PAW DFT, ASE calculator) into a venv, offline except for Debian's and
# PyPI's package registries. Idempotent: nothing is reinstalled that is already there.
#
#   bash .ci/install_gpaw.sh .venv          (what `make setup-gpaw` runs)
#
# Why not `pip install gpaw` (see ../shared/GPAW_NOTES.md, measured 2026-11): GPAW's C
# extension is C++ but the default build compiles it with gcc and fails (zero.c: fatal error:
# algorithm); without 'blas' in the config it builds without native BLAS. So the build reads
# a siteconfig.py (GPAW_CONFIG) naming g++, serial (no MPI), FFTW and OpenBLAS. PAW setups
# come from Debian's gpaw-data (/usr/share/gpaw-setups); nothing is downloaded at run time.
set -euo pipefail

VENV=${1:?usage: install_gpaw.sh VENV}
GPAW_VERSION=${GPAW_VERSION:-26.7.0}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "install_gpaw.sh: no python at $PY (run make setup first)" >&2; exit 2; }

DEBS=(gpaw-data libxc-dev libopenblas-dev liblapack-dev libfftw3-dev pkg-config g++)
missing=()
for pkg in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install_gpaw.sh: apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
fi

if "$PY" - "$GPAW_VERSION" <<'PYEOF' 2>/dev/null; then
import sys
from importlib.metadata import version
import gpaw  # noqa: F401  (the C extension must import, not only the metadata exist)
import _gpaw  # noqa: F401
sys.exit(0 if version("gpaw") == sys.argv[1] else 1)
PYEOF
    echo "install_gpaw.sh: gpaw $GPAW_VERSION already in $VENV"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# serial build with g++; an installed openmpi-bin would otherwise be picked up (mpic++)
cat > "$tmp/siteconfig.py" <<'CFG'
compiler = 'g++'
mpi = False
fftw = True
libraries += ['fftw3', 'blas']
CFG
echo "install_gpaw.sh: building gpaw $GPAW_VERSION (about 1.5 CPU-minutes)"
GPAW_CONFIG="$tmp/siteconfig.py" "$PY" -m pip install -q "gpaw==$GPAW_VERSION"
"$PY" -c "import gpaw, _gpaw; print('install_gpaw.sh: gpaw', gpaw.__version__, 'ok')"
