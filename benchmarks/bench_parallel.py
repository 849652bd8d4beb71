"""Thin wrapper kept for old commands: the benchmark lives in the package (nplib/lab/bench.py).

    python -m nplib bench parallel [--quick] [--device cpu|cuda|auto] [--out FILE]

is the same command and works from an installed nplib; see benchmarks/README.md.
"""
import sys

from nplib.lab.bench import main

if __name__ == "__main__":
    main(["parallel", *sys.argv[1:]])
