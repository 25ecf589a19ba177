"""silo's performance suite: every party a separate OS process on loopback.

Run ``python -m benchmarks`` (``--help`` for the options). Each benchmark module holds the
party programs (run in child processes by :mod:`benchmarks.worker`) and the orchestration that
starts them and turns their reports into :class:`benchmarks.harness.Figure` rows.
"""
