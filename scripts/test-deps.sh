#!/usr/bin/env bash
# Installs, when missing, the Debian tools the test suite uses (run by `npm test`).
#   gcc, ld, objdump, readelf: compile and inspect the C fixtures and oracles
#   gdb:   backtrace oracle for the stack unwinder
#   wabt:  wasm2c, the second Wasm host of the core
#   make, patch, dpkg-dev (dpkg-buildflags, dpkg-source): the source-tree builds of `patchc build`
#   libpcre2-dev, zlib1g-dev: the real program, nginx (scripts/real-nginx.sh), built by the tests
#   perf (linux-perf): names the code of a patch from the perf map apply writes (test/cli-apply-perfmap)
# and a deb-src entry for `apt-get source` (the twin of the deb one), when there is none.
set -eu
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v objdump >/dev/null || need+=(binutils)
command -v gdb >/dev/null || need+=(gdb)
command -v wasm2c >/dev/null || need+=(wabt)
[ -f /usr/share/wabt/wasm2c/wasm-rt-impl.c ] || [ -f /usr/include/wasm-rt.h ] || need+=(wabt)
command -v make >/dev/null || need+=(make)
command -v patch >/dev/null || need+=(patch)
command -v mount >/dev/null || need+=(mount) # the container test (util-linux: unshare, pivot_root, essential)
command -v dpkg-buildflags >/dev/null || need+=(dpkg-dev)
[ -f /usr/include/pcre2.h ] || need+=(libpcre2-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v perf >/dev/null || need+=(linux-perf)

# deb-src: Debian 12 lists its sources in deb822 files; add the deb-src twin of the deb
# entries (same URIs, suites, components, key) unless some deb-src entry exists.
src_list=/etc/apt/sources.list.d/debian-src.sources
add_src=0
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  [ -f /etc/apt/sources.list.d/debian.sources ] && add_src=1
fi

if [ ${#need[@]} -gt 0 ] || [ $add_src = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    [ $add_src = 1 ] && need+=("a deb-src entry in /etc/apt/sources.list.d")
    echo "test-deps: missing: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ $add_src = 1 ]; then
    echo "test-deps: adding $src_list (deb-src twin of debian.sources)" >&2
    sed -E 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$src_list"
  fi
  apt-get update -qq
  if [ ${#need[@]} -gt 0 ]; then
    echo "test-deps: installing ${need[*]}" >&2
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
