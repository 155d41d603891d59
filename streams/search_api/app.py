"""The search API: ``GET /search`` (JSON), the page at ``/``, OpenAPI docs at ``/docs``.

Every answer is JSON with a status code, never a stack trace: a bad parameter is 400
with what was wrong (not the input echoed back), Milvus away is 503 with ``Retry-After``,
anything unexpected is 500 with one line. The searcher is opened once, in the app's
lifespan, on the event loop that serves it, and closed with it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from agents.search_ranking import SearchMode
from schemas import ScribeError
from streams.commands.searching import Searcher, SearchResponse

log = logging.getLogger("scribe.search_api")

#: Longest query accepted, in characters.
MAX_QUERY_CHARS = 500
#: Most chapters one request may ask for.
MAX_K = 50
#: Seconds a client is told to wait when Milvus is away.
RETRY_AFTER_S = 5
#: A novel id, as events carry it.
NOVEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BadRequest(Exception):
    """A request the API refuses (400), with the reason."""


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": message}`` with ``status``."""
    return JSONResponse({"error": message, "status": status}, status, headers=headers)


def clean_query(q: str) -> str:
    """The query stripped; refused when empty, over :data:`MAX_QUERY_CHARS` or holding
    control characters (tabs and line breaks count as spaces)."""
    q = " ".join(q.split())
    if not q:
        raise BadRequest("q is empty: give the words to search for")
    if len(q) > MAX_QUERY_CHARS:
        raise BadRequest(f"q has {len(q)} characters; at most {MAX_QUERY_CHARS} are searched")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in q):
        raise BadRequest("q holds control characters")
    return q


def create_app(open_searcher: Callable[[], AbstractAsyncContextManager[Searcher]]) -> FastAPI:
    """The API around the searcher that ``open_searcher`` opens for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_searcher() as searcher:
            app.state.searcher = searcher
            yield

    app = FastAPI(
        title="scribe-stream search",
        summary="Hybrid (dense + BM25) search over the novel index, one hit per chapter.",
        lifespan=lifespan,
    )

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return error(400, "; ".join(parts))

    @app.exception_handler(ScribeError)
    async def scribe_error(request: Request, exc: ScribeError) -> JSONResponse:
        if exc.retriable:
            log.warning("search failed, the index is away: %s", exc)
            return error(
                503,
                f"the index is not answering ({type(exc).__name__}); try again shortly",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        log.error("search failed: %s", exc)
        return error(500, f"search failed: {type(exc).__name__}: {exc.reason}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("search failed unexpectedly")
        return error(500, f"internal error ({type(exc).__name__}); see the server's log")

    @app.get("/search", response_model=SearchResponse)
    async def search(
        request: Request,
        q: Annotated[str, Query(description="What to look for.", max_length=10 * MAX_QUERY_CHARS)],
        novel: Annotated[str | None, Query(description="Only this novel.")] = None,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Chapters returned.")] = 5,
        mode: Annotated[SearchMode, Query(description="Retrievers used.")] = SearchMode.HYBRID,
    ) -> SearchResponse:
        """The ``k`` best chapters for ``q``: best passages with the query's words marked,
        and per hit why it ranks there and where it came from (``explain``)."""
        query = clean_query(q)
        if novel is not None and not NOVEL_ID.match(novel):
            raise BadRequest("novel is not a novel id (letters, digits, . _ -; 128 at most)")
        searcher: Searcher = request.app.state.searcher
        return await searcher.search(query, k, novel or None, mode)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """The server is up (it does not ask Milvus: ``/search`` says 503 when it is away)."""
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files(__package__).joinpath("page.html").read_text("utf-8"))

    return app
