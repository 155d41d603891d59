"""The ``scribe`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from streams.settings import Settings

app = typer.Typer(
    help="scribe-stream: novel events -> Faust -> Prefect -> embeddings -> Milvus.",
    no_args_is_help=True,
)
flows_app = typer.Typer(help="The Prefect side (deployment and runner).", no_args_is_help=True)
schemas_app = typer.Typer(help="Event contracts.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(flows_app, name="flows")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
console = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


def sample_path() -> Path:
    """The bundled sample novel (first ten chapters of 西游记)."""
    return Path(str(resources.files("streams") / "samples" / "xiyouji-1-10.txt"))


@app.command()
def worker() -> None:
    """Run the Faust worker (chapter agent and result agent)."""
    import faust

    from streams.app import create_app
    from streams.kafka import ensure_topics

    settings = _settings()
    asyncio.run(ensure_topics(settings))
    faust_app = create_app(settings)
    faust.Worker(faust_app, loglevel=settings.log_level.lower()).execute_from_commandline()


@flows_app.command("serve")
def flows_serve() -> None:
    """Deploy novel-processor and execute its runs with a process worker on the pool."""
    from streams.runner import serve_with_worker

    settings = _settings()
    asyncio.run(serve_with_worker(settings))


@flows_app.command("deploy")
def flows_deploy() -> None:
    """Create or update the work pool and the deployment, then exit."""
    from streams.runner import deploy

    typer.echo(asyncio.run(deploy(_settings())))


@topics_app.command("create")
def topics_create() -> None:
    """Create the topics with the configured partitions (Faust must not auto-create them)."""
    from streams.kafka import ensure_topics

    created = asyncio.run(ensure_topics(_settings()))
    typer.echo("created: " + (", ".join(created) or "nothing (all exist)"))


@schemas_app.command("export")
def schemas_export(directory: Path) -> None:
    """Write the JSON Schema of every event to DIRECTORY."""
    from schemas import event_json_schema, result_json_schema

    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in (
        ("novel-events.v1", event_json_schema()),
        ("novel-events.embeddings.v1", result_json_schema()),
    ):
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        typer.echo(str(path))


@app.command()
def produce(
    path: Annotated[Path, typer.Argument(help="A novel text file, or a .jsonl file of events.")],
    novel: Annotated[str | None, typer.Option(help="Novel id (default: the file name).")] = None,
    version: Annotated[int, typer.Option(min=1, help="Chapter version to emit.")] = 1,
    limit: Annotated[int | None, typer.Option(help="Only the first N chapters.")] = None,
) -> None:
    """Send a novel's chapters (split on 第N回/第N章/Chapter N) or a JSONL file to Kafka."""
    from streams.producing import produce_file

    settings = _settings()
    sent = asyncio.run(
        produce_file(settings, path, novel, version, limit, Progress(console=console))
    )
    console.print(f"sent {sent} events to {settings.topic_events}")


@app.command()
def search(
    query: str,
    novel: Annotated[str | None, typer.Option(help="Only this novel.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100)] = 5,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Semantic search over the index."""
    from streams.searching import run_search

    settings = _settings()
    hits = asyncio.run(run_search(settings, query, k, novel))
    if as_json:
        typer.echo(json.dumps([h.__dict__ for h in hits], ensure_ascii=False, indent=2))
        return
    table = Table("score", "novel", "chapter", "v", "chunk", "text")
    for h in hits:
        snippet = h.text.replace("\n", " ")[:80]
        table.add_row(
            f"{h.score:.3f}",
            h.novel_id,
            h.chapter_id,
            str(h.chapter_version),
            str(h.chunk_no),
            snippet,
        )
    Console().print(table)


@app.command()
def dev(
    sample: Annotated[
        bool, typer.Option(help="Produce the bundled sample novel once ready.")
    ] = False,
) -> None:
    """Run the whole embedded stack on 127.0.0.1 until Ctrl-C (data under SCRIBE_DATA_DIR)."""
    from streams.devstack import run_dev

    settings = _settings()
    sys.exit(run_dev(settings, sample_path() if sample else None, console))


def main() -> None:
    """Entry point of the ``scribe`` script."""
    app()


if __name__ == "__main__":
    main()
