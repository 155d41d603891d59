"""The embedded stack on 127.0.0.1 (Kafka, PostgreSQL, Prefect, Milvus Lite) and
``scribe dev``, which supervises it with the worker and the runner."""
