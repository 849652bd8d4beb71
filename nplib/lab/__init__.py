"""Studies and measurements of the method: the ablation (:mod:`nplib.lab.ablation`), what the chain does
(:mod:`nplib.lab.chain`), the baseline's initialisation probe (:mod:`nplib.lab.init_probe`), the benchmarks
(:mod:`nplib.lab.bench`) and the paper's tables (:mod:`nplib.lab.reproduce`). Built on the core and the other
wings; nothing below imports it.
"""
