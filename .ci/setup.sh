#!/usr/bin/env bash
# One-time set-up of a fresh machine for the pip path: system libraries (apt) and .venv (pip).
# Idempotent; called by `make venv` (and so by `make demo` / `make test`) and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libosmesa6 slurm-wlm munge)   # offscreen VTK rendering; local Slurm for the cluster test

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    if [ -z "$SUDO" ] || command -v sudo >/dev/null; then
        echo "[setup] apt-get install ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "[setup] WARNING: not root and no sudo: install ${missing[*]} yourself (offscreen renders / Slurm test will be skipped)" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "[setup] pip install -e .[test] (TensorFlow, ASTRA, PyVista, Snakemake, ...)"
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python - <<'PY'
import astra, keras, pyvista, snakemake, tensorflow  # noqa: F401  (fail early if anything is missing)
print(f"[setup] ok: astra {astra.__version__}, keras {keras.__version__}, tensorflow {tensorflow.__version__}, pyvista {pyvista.__version__}")
PY
