# Sourced by the scripts: one place for the paths and build variables.
# shellcheck shell=bash
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export AUTOTAG_CACHE="${AUTOTAG_CACHE:-$HOME/.cache/autotag}"
# Cargo's build cache is per user so that a fresh clone (CI) reuses compiled
# dependencies (aws-sdk, rdkafka's bundled librdkafka, torch-sys: ~15 min cold).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$AUTOTAG_CACHE/target}"
if [ -d "$ROOT/.local/venv" ]; then
  # The resolved cache path, not the clone's link: tch's build script bakes
  # the torch lib dir into the binary's rpath, and the cache path is the same
  # for every clone.
  VENV_DIR="$(readlink -f "$ROOT/.local/venv")"
  # tch's build script finds libtorch through the venv's python.
  export LIBTORCH_USE_PYTORCH=1
  export PATH="$VENV_DIR/bin:$PATH"
  TORCH_LIB="$(echo "$VENV_DIR"/lib/python3*/site-packages/torch/lib)"
  export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
