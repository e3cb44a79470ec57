#!/usr/bin/env bash
# Runs every test, then every test but the long unlearning flow again with the Khronos
# validation layer (synchronization validation included), where any message fails the test.
# Last, the serving and engine tests run once more in a build with AddressSanitizer and
# UndefinedBehaviorSanitizer (build-sanitize/), where any finding fails the test;
# ASU_SANITIZE=0 skips that pass.
set -euo pipefail
cd "$(dirname "$0")/.."
meson test -C build --print-errorlogs --num-processes 2
ASU_VK_VALIDATION=1 meson test -C build --print-errorlogs --num-processes 2 \
  --no-suite flow --no-suite shaders --no-suite results

if [ "${ASU_SANITIZE:-1}" != 0 ]; then
  if [ ! -f build-sanitize/build.ninja ]; then
    meson setup build-sanitize --buildtype=debugoptimized -Db_sanitize=address,undefined \
      -Db_lundef=false
  fi
  ninja -C build-sanitize
  # A leak found at exit aborts the process, so a server's nonzero exit status fails its test.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
  # Mesa's lavapipe driver keeps some blocks only through its own globals. The Vulkan loader
  # unloads the driver before the leak check at exit, and LeakSanitizer then reports those
  # blocks as leaked from an unknown module. Preloading the driver keeps it mapped to the end.
  lvp=$(ls /usr/lib/*/libvulkan_lvp.so 2>/dev/null | head -n 1 || true)
  if [ -n "$lvp" ]; then
    export LD_PRELOAD="$lvp"
    ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0"
  fi
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  meson test -C build-sanitize --print-errorlogs --num-processes 2 \
    --suite e2e --suite formats --suite model --suite results
fi
