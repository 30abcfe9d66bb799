#!/usr/bin/env bash
# Install what the Slurm integration test (tests/test_slurm.py, marker `slurm`) needs on Debian/Ubuntu:
# Slurm 22.05+ (slurmctld, slurmd, client commands, basic plugins) and munge.  Idempotent: installs only
# what is missing.  Needs root.  The test itself writes its own configuration, munge key and state under
# /tmp/tomoflow-slurm and starts/stops the daemons; nothing is started here.
#
#   tests/slurm/setup.sh            # install if missing, then check the binaries
#   tests/slurm/setup.sh --check    # only check
set -euo pipefail

packages=(slurm-wlm munge)
binaries=(munged munge unmunge slurmctld slurmd sbatch srun squeue scontrol scancel sinfo runuser)

missing_bins() {
    local b out=()
    for b in "${binaries[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "$b" >/dev/null 2>&1 || out+=("$b")
    done
    echo "${out[@]:-}"
}

if [[ "${1:-}" != "--check" && -n "$(missing_bins)" ]]; then
    if [[ $EUID -ne 0 ]]; then
        echo "setup.sh: run as root to install ${packages[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

missing="$(missing_bins)"
if [[ -n "$missing" ]]; then
    echo "setup.sh: still missing: $missing" >&2
    exit 1
fi
echo "slurm: $(PATH="$PATH:/usr/sbin" slurmd -V)  munge: $(munge -V 2>&1 | head -1)"
PATH="$PATH:/usr/sbin" slurmd -C | head -1
