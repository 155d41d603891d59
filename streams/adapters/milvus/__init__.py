"""Milvus: the vector store of the sink, its catalog of collections, and the flow's
lookup of known vectors."""
