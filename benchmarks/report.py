"""Thin wrapper kept for old commands: ``python -m nplib bench report [--dir DIR]`` (nplib/lab/bench.py)
prints the markdown tables of benchmarks/README.md from the shipped results (nplib/results/)."""
import sys

from nplib.lab.bench import main

if __name__ == "__main__":
    print(main(["report", *sys.argv[1:]]))
