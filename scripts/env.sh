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

# The shared target dir serves every checkout (a clean clone reuses the compiled dependencies),
# but cargo does not rebuild a workspace crate whose sources did not change when the checkout
# moved: its tests would keep the other checkout's env!("CARGO_MANIFEST_DIR") (measured: a
# clone's test binaries read schemas/ from a deleted directory). So when the checkout that last
# built here was another one, our own crates (not the dependencies: ~2 min) are rebuilt.
own_target_dir() {
  local mark="$CARGO_TARGET_DIR/.autotag-checkout"
  if [ -d "$CARGO_TARGET_DIR/release" ] && [ "$(cat "$mark" 2>/dev/null)" != "$ROOT" ]; then
    echo "[env] $CARGO_TARGET_DIR was last built from $(cat "$mark" 2>/dev/null || echo 'an unknown checkout'): rebuilding this checkout's crates" >&2
    local pkgs
    # Every package of the workspace, so that a new crate cannot be forgotten here.
    pkgs=$(cd "$ROOT" && cargo metadata --no-deps --format-version 1 |
      python3 -c 'import json, sys; print(" ".join("-p " + p["name"] for p in json.load(sys.stdin)["packages"]))')
    # shellcheck disable=SC2086
    (cd "$ROOT" && cargo clean --release -q $pkgs)
  fi
  mkdir -p "$CARGO_TARGET_DIR" && echo "$ROOT" > "$mark"
}
