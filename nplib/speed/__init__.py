"""Ways to train NoProp-DT faster, none of which changes what is computed: the vmap fast path
(:mod:`nplib.speed.fast`), block-parallel training over processes (:mod:`nplib.speed.parallel`), and CPU
threads and glibc malloc settings (:mod:`nplib.speed.cpu`). Built on the core; the core never imports it.
"""
