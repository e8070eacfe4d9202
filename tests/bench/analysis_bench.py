#!/usr/bin/env python3
"""The reference for the analysis benchmark: `freq` (count and mean weight per layer and
expert, tokens per layer) and token nPMI computed by polars' streaming engine over the same
records folder that `moescope analyze` reads. Run each under /usr/bin/time -v for peak memory.

Usage: python tests/bench/analysis_bench.py freq|npmi RECORDS_DIR [TOKEN]
"""

import sys
import time

import polars as pl


def main():
    stat, records = sys.argv[1], sys.argv[2]
    token = sys.argv[3] if len(sys.argv) > 3 else "<think>"
    lf = pl.scan_parquet(f"{records}/routing.parquet")
    start = time.time()
    if stat == "freq":
        experts = lf.group_by("layer", "expert").agg(
            pl.len().alias("count"), pl.col("weight").mean().alias("mean_weight"))
        layers = lf.filter(pl.col("rank") == 0).group_by("layer").agg(pl.len().alias("tokens"))
        out = experts.join(layers, on="layer").with_columns(
            (pl.col("count") / pl.col("tokens")).alias("rate")).collect(engine="streaming")
    elif stat == "npmi":
        x = pl.col("token_text") == token
        pairs = lf.group_by("layer", "expert").agg(
            pl.len().alias("n_y"), x.sum().alias("n_xy"))
        layers = lf.filter(pl.col("rank") == 0).group_by("layer").agg(
            pl.len().alias("n"), x.sum().alias("n_x"))
        pxy = pl.col("n_xy") / pl.col("n")
        pmi = (pxy / ((pl.col("n_x") / pl.col("n")) * (pl.col("n_y") / pl.col("n")))).log()
        out = pairs.join(layers, on="layer").with_columns(
            pl.when(pl.col("n_xy") == 0).then(-1.0).otherwise(pmi / -pxy.log()).alias("npmi")
        ).sort("npmi", descending=True).collect(engine="streaming")
    else:
        sys.exit(f"unknown statistic {stat}")
    print(out.head(5))
    print(f"{stat}: {time.time() - start:.1f} s, polars {pl.__version__}")


if __name__ == "__main__":
    main()
