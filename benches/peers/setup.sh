#!/usr/bin/env bash
# Installs the peer systems the macro benchmarks can compare against
# (DuckDB, Polars and PySpark, from PyPI) into a virtual environment under
# target/peers-venv. Optional: `harrow-bench ... --peers` uses them when the
# environment exists and says so when it does not. Spark also needs a Java
# runtime (17 or later) on the PATH (Debian: openjdk-17-jre-headless); the
# bench skips it, saying so, without one.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/peers-venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet duckdb polars pyspark
"$venv/bin/python" -c 'import duckdb, polars, pyspark; print("duckdb", duckdb.__version__, "polars", polars.__version__, "pyspark", pyspark.__version__)'
echo "peers installed in $venv"
