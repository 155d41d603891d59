"""The ``scribe`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from agents.search_ranking import SearchMode
from streams import export_prefect_env, logs
from streams.settings import Settings

app = typer.Typer(
    help="scribe-stream: novel events -> Faust -> Prefect -> embeddings -> Milvus.",
    no_args_is_help=True,
)
flows_app = typer.Typer(help="The Prefect side (deployment and runner).", no_args_is_help=True)
schemas_app = typer.Typer(help="Event contracts.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter topic.", no_args_is_help=True)
index_app = typer.Typer(help="Milvus collections behind the alias.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(index_app, name="index")
app.add_typer(flows_app, name="flows")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
console = Console(stderr=True)


_PROCESS_SETTINGS: list[Settings] = []


def _settings() -> Settings:
    """This process's settings, read once; the first call exports the Prefect environment.

    ``main`` calls it before any command runs, so no command can import Prefect (which
    reads its settings at import time) before ``PREFECT_API_URL`` and the rest are set;
    :func:`streams.export_prefect_env` raises if something imported Prefect earlier.
    """
    if not _PROCESS_SETTINGS:
        settings = Settings()
        export_prefect_env(settings)
        logs.configure(settings.log_level, settings.log_json)
        _PROCESS_SETTINGS.append(settings)
    return _PROCESS_SETTINGS[0]


def sample_path() -> Path:
    """The bundled sample novel (first ten chapters of 西游记)."""
    return Path(str(resources.files("streams") / "samples" / "xiyouji-1-10.txt"))


@app.command()
def worker() -> None:
    """Run the Faust worker (chapter agent and result agent)."""
    import faust

    from streams.app import create_app
    from streams.topics import ensure_scribe_topics

    settings = _settings()
    asyncio.run(ensure_scribe_topics(settings))
    faust_app = create_app(settings)
    faust.Worker(
        faust_app,
        loglevel=settings.log_level.lower(),
        logging_config=logs.logging_config(settings.log_level, settings.log_json),
    ).execute_from_commandline()


@flows_app.command("serve")
def flows_serve(
    warm: Annotated[
        bool,
        typer.Option(
            "--warm/--process",
            help="Run flows inside this process with the model loaded once (warm), or one "
            "process per run with Prefect's process worker on the work pool.",
        ),
    ] = False,
) -> None:
    """Deploy novel-processor and execute its runs (SCRIBE_RUNNER_LIMIT at a time)."""
    settings = _settings()  # before anything imports Prefect
    from streams.runner import serve_warm, serve_with_worker

    if warm:
        serve_warm(settings)
    else:
        asyncio.run(serve_with_worker(settings))


@flows_app.command("deploy")
def flows_deploy() -> None:
    """Create or update the work pool and the deployment, then exit."""
    settings = _settings()  # before anything imports Prefect
    from streams.runner import deploy

    typer.echo(asyncio.run(deploy(settings)))


@flows_app.command("automations")
def flows_automations() -> None:
    """Create or update the Prefect automations (zombie runs; failure webhook if set)."""
    settings = _settings()  # before anything imports Prefect
    from prefect.client.orchestration import get_client

    from streams.runner import ensure_automations

    async def run() -> dict[str, str]:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(settings.deployment)
            return await ensure_automations(client, settings, deployment.id)

    typer.echo(json.dumps(asyncio.run(run()), indent=2))


@topics_app.command("create")
def topics_create() -> None:
    """Create the topics with the configured partitions (Faust must not auto-create them)."""
    from streams.topics import ensure_scribe_topics

    created = asyncio.run(ensure_scribe_topics(_settings()))
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
    from streams.commands.producing import produce_file

    settings = _settings()
    done = asyncio.run(
        produce_file(settings, path, novel, version, limit, Progress(console=console))
    )
    console.print(f"sent {done.sent} events to {settings.topic_events}")


@app.command()
def search(
    query: str,
    novel: Annotated[str | None, typer.Option(help="Only this novel.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Hits shown.")] = 5,
    mode: Annotated[
        SearchMode, typer.Option(help="hybrid: dense and BM25 fused; or one of them.")
    ] = SearchMode.HYBRID,
    chunks: Annotated[bool, typer.Option("--chunks", help="Chunks, not chapters.")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Per hit: its event, flow run, ranks, reuse.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search the index: one hit per chapter with its best passage, the query's words
    highlighted (--chunks: today's chunk list; --json: every field, explain included)."""
    from streams.commands.search_view import render_chapters, render_hits
    from streams.commands.searching import NO_SPARSE_NOTE, open_searcher

    settings = _settings()

    async def run() -> Any:
        async with open_searcher(settings) as searcher:
            if chunks:
                return await searcher.search_chunks(query, k, novel, mode)
            return await searcher.search(query, k, novel, mode)

    found = asyncio.run(run())
    out = Console()
    if chunks:
        used, hits = found
        if as_json:
            chunk_list = [h.__dict__ for h in hits]
            payload = {"query": query, "mode": mode, "searched": used, "chunks": chunk_list}
            typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
            return
        if used != mode:
            console.print(f"[yellow]{NO_SPARSE_NOTE}[/]")
        if not hits:
            console.print("no hits (is the index empty? `scribe status` shows its row count)")
        for line in render_hits(hits, query, out.width):
            out.print(line, soft_wrap=False)
        return
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
        return
    if found.note:
        console.print(f"[yellow]{found.note}[/]")
    if not found.hits:
        console.print("no hits (is the index empty? `scribe status` shows its row count)")
    for line in render_chapters(found, out.width, explain):
        out.print(line, soft_wrap=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [SCRIBE_SEARCH_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [SCRIBE_SEARCH_PORT].")] = None,
) -> None:
    """Serve the search API (GET /search, docs at /docs) and the search page (/)."""
    import uvicorn

    from streams.commands.searching import Searcher, open_searcher
    from streams.search_api.app import create_app

    settings = _settings()
    host = host or settings.search_host
    port = settings.search_port if port is None else port

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[Searcher]:
        async with open_searcher(settings) as searcher:  # the model loaded: ready
            console.print(f"search page: http://{host}:{port}/  API: http://{host}:{port}/docs")
            yield searcher

    uvicorn.run(create_app(opened), host=host, port=port, log_level="warning", access_log=False)


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="Newest N.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Dead letters with their reason and source position."""
    from streams.commands.dlq import read_all

    parked = asyncio.run(read_all(_settings(), limit))
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "position": p.position,
                        "key": (p.key or b"").decode("utf-8", "replace"),
                        **p.letter.model_dump(mode="json"),
                    }
                    for p in parked
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table("position", "class", "retriable", "source", "key", "reason")
    for p in parked:
        table.add_row(
            p.position,
            p.letter.error_class,
            "yes" if p.letter.retriable else "no",
            str(p.letter.source or ""),
            (p.key or b"").decode("utf-8", "replace"),
            p.letter.reason[:100],
        )
    Console().print(table)


@dlq_app.command("show")
def dlq_show(position: Annotated[str, typer.Argument(help="PARTITION:OFFSET or OFFSET")]) -> None:
    """One dead letter: headers and the original value."""
    from streams.commands.dlq import find

    [p] = asyncio.run(find(_settings(), [position]))
    typer.echo(
        json.dumps(
            {"position": p.position, **p.letter.model_dump(mode="json")},
            ensure_ascii=False,
            indent=2,
        )
    )
    if p.value is None:
        typer.echo("(no value: a null record)")
        return
    text = p.value.decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    typer.echo(text)


@dlq_app.command("redrive")
def dlq_redrive(
    positions: Annotated[list[str] | None, typer.Argument(help="PARTITION:OFFSET ...")] = None,
    redrive_all: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every retriable dead letter of the input topic (others are skipped, counted).",
        ),
    ] = False,
    any_error: Annotated[bool, typer.Option(help="With --all: non-retriable ones too.")] = False,
) -> None:
    """Re-publish dead letters to the input topic (after a fix, or for retriable failures)."""
    from streams.commands import redrive as rd
    from streams.commands.dlq import find

    settings = _settings()
    if redrive_all:
        report = asyncio.run(rd.redrive_all(settings, any_error))
    elif positions:  # a letter named explicitly that cannot be redriven is refused
        named = asyncio.run(find(settings, positions))
        report = rd.RedriveReport(sent=asyncio.run(rd.redrive(settings, named)))
    else:
        raise typer.BadParameter("give positions or --all")
    for line in report.lines(settings.topic_events):
        console.print(line, soft_wrap=True, markup=False)


@app.command()
def replay(
    start: Annotated[
        str, typer.Option("--from", help="earliest, or an RFC 3339 time")
    ] = "earliest",
    novel: Annotated[str | None, typer.Option(help="Only this novel (in place).")] = None,
    resink: Annotated[
        bool,
        typer.Option(
            "--resink/--reembed", help="Rebuild from the results topic alone / run the flows again."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="A full rebuild switches even while chapters the live index holds failed "
            "for good in it (they are missing from search until redriven).",
        ),
    ] = False,
) -> None:
    """Reprocess history beside the running workers (see README: Replay)."""
    from datetime import datetime

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    settings = _settings()  # before anything imports Prefect
    from streams.commands.replay import replay as run_replay

    when = (
        "earliest" if start == "earliest" else datetime.fromisoformat(start.replace("Z", "+00:00"))
    )
    if when != "earliest" and when.tzinfo is None:  # type: ignore[union-attr]
        raise typer.BadParameter("--from needs a time zone, e.g. 2026-11-01T00:00:00Z")
    mode = "resink" if resink else "reembed"
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.speed} msg/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"replay --{mode}", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=max(total, done))

        summary = asyncio.run(
            run_replay(settings, mode, when, novel, tick, force=force)  # type: ignore[arg-type]
        )
    typer.echo(json.dumps(summary.__dict__, indent=2, default=str))


@index_app.command("list")
def index_list() -> None:
    """Collections, their aliases and row counts."""
    from streams.wiring import vector_store

    async def run() -> list[dict[str, object]]:
        store = vector_store(_settings())
        try:
            return await store.collections()
        finally:
            await store.close()

    table = Table("collection", "aliases", "rows")
    for c in asyncio.run(run()):
        table.add_row(str(c["name"]), ", ".join(c["aliases"]), str(c["rows"]))  # type: ignore[arg-type]
    Console().print(table)


@index_app.command("drop")
def index_drop(name: str) -> None:
    """Drop a collection that no alias uses (e.g. the one a rebuild replaced), and its
    ledger scope, so that a collection created later under that name starts empty."""
    from streams.commands.index import drop

    existed = asyncio.run(drop(_settings(), name))
    what = "" if existed else " (no such collection: only its books were left)"
    console.print(f"dropped {name} and its ledger scope{what}", markup=False)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Health: lag per partition, flow runs, ledger, index, DLQ. Exit 1 when unhealthy.

    Also unhealthy, naming the repair: the index holds fewer rows than the ledger says
    are indexed, a chapter pending longer than SCRIBE_STATUS_PENDING_SECONDS, results
    waiting unconsumed longer than SCRIBE_STATUS_RESULT_WAIT_SECONDS.
    """
    from streams.commands import status as st
    from streams.commands.status_view import render

    report = asyncio.run(st.check(_settings()))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    else:
        render(report, Console())
    raise typer.Exit(1 if report["problems"] else 0)


@app.command()
def exporter() -> None:
    """Serve what scribe status sees as Prometheus gauges on SCRIBE_EXPORTER_PORT
    (/metrics, /health), read every SCRIBE_EXPORTER_INTERVAL_SECONDS, until Ctrl-C."""
    from streams.commands.status_metrics import StatusGauges, export_forever
    from streams.metrics import serve as serve_metrics

    settings = _settings()
    gauges = StatusGauges()
    max_age = 3 * settings.exporter_interval_seconds + 60
    server = serve_metrics(
        settings.exporter_port,
        lambda: gauges.fresh(max_age),
        settings.metrics_host,
        gauges.registry,
    )
    if server is None:
        console.print(f"[red]error:[/red] no metrics endpoint on port {settings.exporter_port}")
        raise typer.Exit(1)
    console.print(f"metrics: http://{settings.metrics_host}:{settings.exporter_port}/metrics")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(export_forever(settings, gauges))
    server.shutdown()


@app.command()
def dev(
    sample: Annotated[
        bool, typer.Option(help="Produce the bundled sample novel once ready.")
    ] = False,
) -> None:
    """Run the whole embedded stack on 127.0.0.1 until Ctrl-C (data under SCRIBE_DATA_DIR)."""
    from streams.embedded.devstack import run_dev

    settings = _settings()
    sys.exit(run_dev(settings, sample_path() if sample else None, console))


#: Exit status of a command stopped by a retriable error (sysexits' EX_TEMPFAIL): a
#: service was unreachable, running the same command again later can succeed.
EXIT_TRY_AGAIN = 75


def main() -> None:
    """Entry point of the ``scribe`` script (and of ``python -m streams.cli``).

    Reads the settings and exports the Prefect environment before the command is even
    chosen: whatever a command imports afterwards, Prefect sees the configured API.
    A scribe error ends the command with one line on stderr, not a traceback: exit
    :data:`EXIT_TRY_AGAIN` when it is retriable (a service away), 1 when it is not.
    """
    from schemas import ScribeError

    _settings()
    try:
        app()
    except ScribeError as exc:
        logging.getLogger("scribe.cli").debug("command failed", exc_info=exc)
        hint = "retriable: run it again once the service is back" if exc.retriable else ""
        console_err = Console(stderr=True)
        console_err.print(  # one line, however narrow the terminal (or none)
            f"[red]error:[/red] {type(exc).__name__}: {escape(exc.reason)}", soft_wrap=True
        )
        if hint:
            console_err.print(hint)
        sys.exit(EXIT_TRY_AGAIN if exc.retriable else 1)


if __name__ == "__main__":
    main()
