"""Benchmarks of rfwp's kernels, run from the repository root as modules:

    python -m benchmarks.cpu      # make benchmark
    python -m benchmarks.gpu      # where CUDA exists (benchmarks/gpu_check.sh runs it after the Triton tests)

Both build their inputs with the tests' ``tests/oracle.py`` (imported as ``tests.oracle``) and write their
tables with ``rfwp.results.markdown_table`` (``benchmarks/report.py``).
"""
