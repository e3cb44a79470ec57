#!/usr/bin/env bash
# Runs every test, then every test but the long unlearning flow again with the Khronos
# validation layer (synchronization validation included), where any message fails the test.
set -euo pipefail
cd "$(dirname "$0")/.."
meson test -C build --print-errorlogs --num-processes 2
ASU_VK_VALIDATION=1 meson test -C build --print-errorlogs --num-processes 2 \
  --no-suite flow --no-suite shaders
