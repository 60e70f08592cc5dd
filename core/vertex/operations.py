"""Waiting for Google Cloud: one poll loop for long-running operations and batch jobs.

Both poll with a delay that doubles up to `poll_interval_s` and give up at genml's own
deadline, not the cloud's: the work goes on in Google Cloud, and running the same
command again picks it up (its name is saved before waiting).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from core.backend import Progress, ProgressFn
from core.errors import CloudError
from core.vertex.context import Context


def poll(ctx: Context, fetch: Callable[[], dict[str, Any]], finished: Callable[[dict[str, Any]], bool],
         timeout: Callable[[], CloudError], report: Callable[[dict[str, Any], int], None] | None = None,
         deadline_s: float | None = None) -> dict[str, Any]:
    """fetch() until finished(result) (which may raise), or raise timeout() at the deadline."""
    deadline = time.monotonic() + (deadline_s if deadline_s is not None else ctx.settings.operation_deadline_s)
    delay = min(1.0, ctx.settings.poll_interval_s)
    polls = 0
    while True:
        result = fetch()
        if finished(result):
            return result
        polls += 1
        if report:
            report(result, polls)
        if time.monotonic() + delay > deadline:
            raise timeout()
        ctx.sleep(delay)
        delay = min(delay * 2, ctx.settings.poll_interval_s)


def _operations(ctx: Context, op_name: str) -> Any:
    """The discovery resource whose `get` accepts this operation name (each checks a name pattern)."""
    parts = op_name.split("/")
    res = ctx.clients.aiplatform
    # projects/P/locations/L[/<collection>/<id>]/operations/O
    for i in range(4, len(parts) - 2, 2):
        res = getattr(res, parts[i])()
    return res.operations()


def wait(ctx: Context, op_name: str, what: str, progress: ProgressFn | None = None,
         deadline_s: float | None = None) -> dict[str, Any]:
    """Poll an operation until done; its response, or a CloudError with operation_failed set."""
    def finished(op: dict[str, Any]) -> bool:
        if op.get("done") and op.get("error"):
            e = op["error"]
            exc = CloudError(f"{what} failed: {e.get('message', e)}.",
                             "Check the model files in the job dir and the region's quotas; "
                             "run the command again to retry.")
            exc.operation_failed = True  # type: ignore[attr-defined]  # ad hoc flag for callers
            raise exc
        return bool(op.get("done"))

    def report(op: dict[str, Any], polls: int) -> None:
        if progress:
            progress(Progress(what, polls, 0, "waiting for Google Cloud"))

    def timeout() -> CloudError:
        return CloudError(f"{what} is still running after genml's deadline ({op_name}).",
                          "It goes on in Google Cloud; run the same command again to keep waiting "
                          "(genml remembers where it was).")

    op = poll(ctx, lambda: ctx.clients.call(_operations(ctx, op_name).get(name=op_name), what),
              finished, timeout, report, deadline_s)
    return dict(op.get("response") or {})


def gone_ok(fn: Callable[[], Any]) -> None:
    """Deleting what someone already deleted (e.g. in the console) is not an error."""
    try:
        fn()
    except CloudError as exc:
        if getattr(exc, "http_status", 0) != 404:
            raise
