#!/usr/bin/env bash
# Create the benchmark's own environments under .bench-venv/ (git-ignored), so peers
# never touch the project's .venv. Idempotent: a finished environment is marked with a
# .ok file and skipped next time. A peer whose install fails is left without .ok; its
# driver then reports "not installed" (and why, from the log) instead of a figure.
#
#   .bench-venv/tools      py-spy, pyinstrument (profiling)
#   .bench-venv/<peer>     one venv per Python peer: arq, redflow, dbos, temporal, restate
#   .bench-venv/cluster    coredis and valkey-glide (scripts/bench/cluster_clients.py)
#   .bench-venv/node       npm prefix with @restatedev/restate-server
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=.bench-venv
# The npm peer is pinned here (npm has no lock without a package.json of ours).
RESTATE_SERVER_VERSION=1.7.12
mkdir -p "$ROOT"
PY=${PYTHON:-python3}

venv() {  # venv NAME: installs requirements/bench/NAME.lock (hash-pinned; scripts/lock)
  local name=$1
  local dir=$ROOT/$name lock=requirements/bench/$name.lock
  [ -f "$dir/.ok" ] && cmp -s "$lock" "$dir/.lock" && return 0
  echo "bench setup: $name <- $lock" >&2
  rm -rf "$dir"
  if "$PY" -m venv "$dir" >"$ROOT/$name.log" 2>&1 \
    && "$dir/bin/python" -m pip install -q --require-hashes -r "$lock" \
      >>"$ROOT/$name.log" 2>&1; then
    cp "$lock" "$dir/.lock"
    "$dir/bin/python" -m pip freeze >"$dir/.ok"
  else
    echo "bench setup: $name FAILED (see $ROOT/$name.log)" >&2
  fi
}

for peer in tools arq redflow dbos temporal restate cluster; do
  venv "$peer"
done

if [ ! -f "$ROOT/node/.ok" ]; then
  echo "bench setup: node <- @restatedev/restate-server" >&2
  mkdir -p "$ROOT/node"
  if npm install --prefix "$ROOT/node" --no-audit --no-fund @restatedev/restate-server@"$RESTATE_SERVER_VERSION" \
      >"$ROOT/node.log" 2>&1; then
    touch "$ROOT/node/.ok"
  else
    echo "bench setup: node FAILED (see $ROOT/node.log)" >&2
  fi
fi
exit 0
