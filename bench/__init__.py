"""Benchmarks of scribe-stream on one embedded stack (``python -m bench``).

One run starts one stack (Kafka KRaft, Milvus Lite, PostgreSQL, Prefect on PostgreSQL;
free ports on 127.0.0.1, a temp data dir, ``SCRIBE_RUNNER_LIMIT=2``) and measures on the
same input, side by side:

1. ``direct``: a plain aiokafka consumer -> the same chunker and embedder -> pymilvus
   upsert + flush (no Faust, no Prefect): the baseline (:mod:`bench.direct`);
2. ``warm``: scribe-stream with ``flows serve --warm`` and ``worker`` (:mod:`bench.pipeline`);
3. ``process``: scribe-stream with Prefect's process worker (``flows serve``);
4. ``submission``: the chapter agent's flow-run submissions vs a raw Prefect client loop
   (:mod:`bench.submission`);
5. ``sink``: the result agent's Milvus writes vs raw batched upserts (:mod:`bench.sink`).

Results go to ``--out`` (``results.json``, ``bench.png``), the chart to
``bench/latest.png`` and the tables to BENCHMARKS.md (:mod:`bench.report`).
"""
