"""The one Milvus row schema of the chunk index, and how to create a collection with it.

A row is one chunk of one chapter version (``agents.vector_store.chunk_rows`` writes it):
its text, its dense vector (``embedding``, cosine) and, since the hybrid-search schema, a
sparse BM25 vector (``sparse``) that Milvus derives from ``text`` itself with its built-in
BM25 function and the ``jieba`` tokenizer, in the same upsert as the row. The explain
fields (where the row's event was logged, the flow run that embedded it, whether its
vector was reused) are nullable: rows written without them stay valid.

Collections created before the hybrid schema have neither ``sparse`` nor the explain
fields; they stay searchable, dense only (:func:`has_sparse`), and ``scribe replay
--resink`` moves such an index to a new collection with this schema without embedding.
"""

from __future__ import annotations

from typing import Any

#: Longest chunk text a row stores, in characters (``agents.vector_store.MAX_TEXT_CHARS``).
from agents.vector_store import MAX_TEXT_CHARS

#: The analyzer of the BM25 field: ``jieba`` works on Milvus Lite 3.x (with the
#: ``milvus-lite[chinese]`` extra) and on Milvus server 2.5+; Lite refuses the server's
#: ``{"type": "chinese"}``.
ANALYZER = {"tokenizer": "jieba"}
#: The sparse field Milvus fills from ``text``.
SPARSE_FIELD = "sparse"
DENSE_FIELD = "embedding"
#: Nullable fields that explain a row (``scribe search --explain``).
EXPLAIN_FIELDS = (
    "source_topic",
    "source_partition",
    "source_offset",
    "flow_run_id",
    "reused",
)


def create_collection(
    client: Any, name: str, dimension: int, sparse: bool = True, explain: bool = True
) -> None:
    """Create ``name`` with the chunk schema unless it exists. ``sparse=False``: without the
    BM25 field (benchmarks compare the sizes); with ``explain=False`` too: the schema of
    collections made before hybrid search (tests of the way from one to the other)."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    if client.has_collection(name):
        return
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
    schema.add_field("novel_id", DataType.VARCHAR, max_length=128)
    schema.add_field("chapter_id", DataType.VARCHAR, max_length=128)
    schema.add_field("chapter_version", DataType.INT64)
    schema.add_field("chunk_no", DataType.INT64)
    text: dict[str, Any] = {"max_length": MAX_TEXT_CHARS * 4}
    if sparse:
        text |= {"enable_analyzer": True, "analyzer_params": ANALYZER}
    schema.add_field("text", DataType.VARCHAR, **text)
    schema.add_field("model", DataType.VARCHAR, max_length=256)
    schema.add_field(DENSE_FIELD, DataType.FLOAT_VECTOR, dim=dimension)
    if explain:
        schema.add_field("source_topic", DataType.VARCHAR, max_length=256, nullable=True)
        schema.add_field("source_partition", DataType.INT64, nullable=True)
        schema.add_field("source_offset", DataType.INT64, nullable=True)
        schema.add_field("flow_run_id", DataType.VARCHAR, max_length=64, nullable=True)
        schema.add_field("reused", DataType.BOOL, nullable=True)
    index = client.prepare_index_params()
    index.add_index(field_name=DENSE_FIELD, index_type="AUTOINDEX", metric_type="COSINE")
    if sparse:
        schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=[SPARSE_FIELD],
            )
        )
        index.add_index(
            field_name=SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25"
        )
    client.create_collection(name, schema=schema, index_params=index)


def field_names(client: Any, collection: str) -> frozenset[str]:
    """The fields of ``collection`` (or of the collection behind an alias of that name)."""
    return frozenset(str(f["name"]) for f in client.describe_collection(collection)["fields"])


def has_sparse(fields: frozenset[str]) -> bool:
    """Whether a collection with these fields has the BM25 field (hybrid search)."""
    return SPARSE_FIELD in fields


def fit_rows(rows: list[dict[str, Any]], fields: frozenset[str]) -> list[dict[str, Any]]:
    """``rows`` without the keys the collection has no field for (an older schema)."""
    if all(key in fields for key in rows[0]) if rows else True:
        return rows
    return [{k: v for k, v in row.items() if k in fields} for row in rows]
