"""The benchmarks of ``scripts/bench.py``, one module per workload.

``__main__`` (the flags), ``measure`` (shared measuring helpers: contender order, threads,
memory probes, the machine), ``mlp`` (nnx vs a hand-written reference vs torch), ``compiled``
(NumPy vs JAX eager vs ``nnx.compile``), ``cnn``, ``sequence``, ``augment``, ``distributed``.
Imports go one way: ``__main__`` -> workloads -> ``measure``.
"""
