#!/usr/bin/env bash
# Installs, when missing, the Debian tools the test suite uses (run by `npm test`).
#   gcc, ld, objdump, readelf: compile and inspect the C fixtures and oracles
#   gdb:   backtrace oracle for the stack unwinder
#   wabt:  wasm2c, the second Wasm host of the core
set -eu
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v objdump >/dev/null || need+=(binutils)
command -v gdb >/dev/null || need+=(gdb)
command -v wasm2c >/dev/null || need+=(wabt)
[ -f /usr/share/wabt/wasm2c/wasm-rt-impl.c ] || [ -f /usr/include/wasm-rt.h ] || need+=(wabt)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-deps: missing Debian packages: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "test-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
