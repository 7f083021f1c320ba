#!/usr/bin/env bash
# Installs the peer systems the macro benchmarks can compare against
# (DuckDB and Polars, from PyPI) into a virtual environment under
# target/peers-venv. Optional: `harrow-bench ... --peers` uses them when the
# environment exists and says so when it does not.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/peers-venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet duckdb polars
"$venv/bin/python" -c 'import duckdb, polars; print("duckdb", duckdb.__version__, "polars", polars.__version__)'
echo "peers installed in $venv"
