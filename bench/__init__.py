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
5. ``sink``: the result agent's Milvus writes vs raw batched upserts (:mod:`bench.sink`);
6. ``soak`` (only with ``--soak N``, N > 0): the warm pipeline on N one-chunk chapters
   while the RSS of the runner, the worker and every service is sampled with the number
   of chapters searchable; per process the RSS at 10/50/100 % of the chapters, the growth
   over the second half and a flat/grows verdict (:mod:`bench.soak`,
   :mod:`bench.soak_report`). ``--soak 500`` takes about 15 minutes on 2 cores;
7. ``edits`` (only with ``--edits``): a few chapters indexed, then one-paragraph edits one
   at a time and in a burst through an incremental and a full warm pipeline side by side
   (:mod:`bench.edit_workload`, :mod:`bench.edits`, :mod:`bench.edit_report`).

``--repeat N`` (default 3) runs direct and warm (alternating their order), the sink and
the edit rounds N times; each ratio is reported as the median and the spread.
``--only a,b`` runs a subset of the scenarios.

Results go to ``--out`` (``results.json``, ``bench.png``, ``soak.png``), the charts to
``bench/latest.png`` and ``bench/latest-soak.png`` and the tables to BENCHMARKS.md
(:mod:`bench.report`).
"""
