"""Adapters of the flow's ports to real services: Kafka (results, input events), Prefect
(flow submission) and Milvus (known vectors). Only ``streams.wiring`` builds these."""
