"""The peer systems of the macro benchmarks, run by `harrow-bench --peers`.

    python peers.py SYSTEM WORKLOAD INPUT

SYSTEM is duckdb, polars or pyspark; WORKLOAD is wordcount or aggregate.
Prints the answer as a JSON list, the same tuple Harrow's output is checked
against: wordcount [distinct words, total words] (a word is a maximal run
of letters); aggregate [keys, rows, sum of value] over a CSV with columns
key,value,price or a Parquet file (by its extension) with key and value.
Every engine uses every core and streams the file; Spark runs the
DataFrame API in local mode (`local[N]`, N the cores), its start-up
included, as a user's `spark-submit` would.
"""

import json
import sys


def duckdb_wordcount(path):
    import duckdb

    # One VARCHAR column per line: no quoting, a delimiter the text lacks.
    query = f"""
        SELECT count(*), sum(n) FROM (
            SELECT w, count(*) AS n FROM (
                SELECT unnest(regexp_extract_all(line, '\\pL+')) AS w
                FROM read_csv('{path}', columns = {{'line': 'VARCHAR'}}, header = false,
                              delim = '\\t', quote = '', escape = '', auto_detect = false)
            ) GROUP BY w
        )"""
    distinct, total = duckdb.connect().execute(query).fetchone()
    return [distinct, int(total)]


def polars_wordcount(path):
    import polars as pl

    lines = pl.scan_csv(
        path,
        has_header=False,
        separator="\t",
        quote_char=None,
        new_columns=["line"],
        schema_overrides={"line": pl.Utf8},
    )
    counts = (
        lines.select(pl.col("line").str.extract_all(r"\p{L}+").alias("w"))
        .explode("w")
        .drop_nulls()
        .group_by("w")
        .len()
        .select(pl.len().alias("distinct"), pl.col("len").sum().alias("total"))
        .collect(engine="streaming")
    )
    return [counts["distinct"][0], int(counts["total"][0])]


def duckdb_aggregate(path):
    import duckdb

    table = f"read_parquet('{path}')" if path.endswith(".parquet") else f"read_csv('{path}', header = true)"
    query = f"""
        SELECT count(*), sum(c), sum(s) FROM (
            SELECT key, count(value) AS c, sum(value) AS s, min(value), max(value)
            FROM {table} GROUP BY key
        )"""
    keys, rows, total = duckdb.connect().execute(query).fetchone()
    return [keys, int(rows), int(total)]


def polars_aggregate(path):
    import polars as pl

    table = pl.scan_parquet(path) if path.endswith(".parquet") else pl.scan_csv(path)
    groups = (
        table
        .group_by("key")
        .agg(
            pl.col("value").count().alias("c"),
            pl.col("value").sum().alias("s"),
            pl.col("value").min().alias("low"),
            pl.col("value").max().alias("high"),
        )
        .select(pl.len(), pl.col("c").sum(), pl.col("s").sum())
        .collect(engine="streaming")
    )
    return [groups[0, 0], int(groups[0, 1]), int(groups[0, 2])]


def spark_session():
    import os

    from pyspark.sql import SparkSession

    cores = os.cpu_count() or 1
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("harrow-bench")
        .config("spark.driver.memory", "8g")
        # A few shuffle partitions per core, not the default 200.
        .config("spark.sql.shuffle.partitions", str(4 * cores))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def pyspark_wordcount(path):
    from pyspark.sql import functions as F

    spark = spark_session()
    words = spark.read.text(path).select(
        F.explode(F.regexp_extract_all("value", F.lit(r"\p{L}+"), 0)).alias("w")
    )
    counts = words.groupBy("w").count()
    row = counts.agg(F.count("*"), F.sum("count")).collect()[0]
    spark.stop()
    return [row[0], int(row[1])]


def pyspark_aggregate(path):
    from pyspark.sql import functions as F

    spark = spark_session()
    if path.endswith(".parquet"):
        table = spark.read.parquet(path)
    else:
        table = spark.read.csv(path, header=True, schema="key STRING, value LONG, price DOUBLE")
    groups = table.groupBy("key").agg(
        F.count("value").alias("c"),
        F.sum("value").alias("s"),
        F.min("value"),
        F.max("value"),
    )
    row = groups.agg(F.count("*"), F.sum("c"), F.sum("s")).collect()[0]
    spark.stop()
    return [row[0], int(row[1]), int(row[2])]


SYSTEMS = {
    ("duckdb", "wordcount"): duckdb_wordcount,
    ("polars", "wordcount"): polars_wordcount,
    ("duckdb", "aggregate"): duckdb_aggregate,
    ("polars", "aggregate"): polars_aggregate,
    ("pyspark", "wordcount"): pyspark_wordcount,
    ("pyspark", "aggregate"): pyspark_aggregate,
}

if __name__ == "__main__":
    system, workload, path = sys.argv[1:4]
    print(json.dumps(SYSTEMS[(system, workload)](path)))
