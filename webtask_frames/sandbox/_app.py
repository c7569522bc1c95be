"""The ASGI app: Web Tasks routes, signed downloads and ``/_sandbox`` controls.

Routes (``{prefix}`` defaults to ``/api/v1/workspace``, as the real base URL; the same
two API routes also answer at the root, as in the overview's ``curl`` examples)::

    POST [{prefix}]/{workspaceId}/web-tasks/start              (x-api-key)
    GET  [{prefix}]/{workspaceId}/web-tasks/{webTaskId}/result (x-api-key)
    GET  /_sandbox/files/{webTaskId}.{json|ndjson}?expires=&signature=
    GET  /_sandbox/stats          POST /_sandbox/reset
    POST /_sandbox/cancel/{webTaskId}

Error bodies follow web-task-result-openapi.md exactly; every response
carries an ``x-correlation-id`` header equal to the body's ``correlationId``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._config import SandboxConfig
from ._datagen import GenerationError, generate
from ._faults import SCOPE_FAULT_KEY, FaultMiddleware, FaultPlan
from ._results import FILES_PATH, ResultRenderer, dumps
from ._state import SandboxState
from ._validation import ApiError, StartRequest, parse_start_body

__all__ = ["SandboxApp"]

_JSON = "application/json"
# Results above this many rows are generated off the event loop, so the first
# poll of a 50,000-row result does not stall every other client's polls.
OFFLOAD_ROWS = 1000
_XML = "application/xml"
_XML_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>{cid}</RequestId></Error>"
)


def _cid() -> str:
    return str(uuid.uuid4())


def error_response(err: ApiError, cid: str | None = None) -> Response:
    """The reference error body (``retirable`` is the spec's spelling)."""
    cid = cid or _cid()
    body: dict[str, Any] = {
        "code": err.code,
        "category": "user",
        "message": err.message,
        "retirable": False,
    }
    if err.details is not None:
        body["details"] = err.details
    body["correlationId"] = cid
    return Response(
        dumps(body), status_code=err.status, media_type=_JSON, headers={"x-correlation-id": cid}
    )


def _store_error(status: int, code: str, message: str) -> Response:
    cid = _cid()
    body = _XML_ERROR.format(code=code, message=message, cid=cid)
    return Response(body, status_code=status, media_type=_XML, headers={"x-correlation-id": cid})


class SandboxApp:
    """The sandbox as an ASGI callable, with its state exposed for tests.

    Example:
        >>> import httpx
        >>> app = SandboxApp(SandboxConfig())
        >>> transport = httpx.ASGITransport(app=app)  # use with httpx.AsyncClient
        >>> app.state.stats()["tasks"]
        0
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.state = SandboxState(config)
        self.renderer = ResultRenderer(config, self.state.time)
        self.faults = FaultPlan(config)
        self._probe_cache: OrderedDict[str, str | None] = OrderedDict()
        self._probe_lock = threading.Lock()
        routes = [
            route
            for p in (config.prefix, "")  # under the base URL's prefix, and at the root
            for route in (
                Route(p + "/{workspace_id}/web-tasks/start", self.start, methods=["POST"]),
                Route(
                    p + "/{workspace_id}/web-tasks/{task_id}/result", self.result, methods=["GET"]
                ),
            )
        ]
        routes += [
            Route(FILES_PATH + "{name}", self.download, methods=["GET"]),
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/reset", self.reset_endpoint, methods=["POST"]),
            Route("/_sandbox/cancel/{task_id}", self.cancel, methods=["POST"]),
        ]
        handlers: Any = {404: self._http_error, 405: self._http_error}
        self.starlette = Starlette(routes=routes, exception_handlers=handlers)
        self._asgi = FaultMiddleware(self.starlette, self.state, self.faults)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._asgi(scope, receive, send)

    def reset(self) -> None:
        """Clear tasks, saved automations, counters, fault sequence and caches."""
        self.state.reset()
        self.faults.reset()
        self.renderer.clear()

    # ---------------------------------------------------------------- helpers
    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return error_response(ApiError(404, f"No route for {request.url.path}"))
        if status == 405:
            err = ApiError(405, f"Method {request.method} not allowed for {request.url.path}")
            return error_response(err)
        return error_response(ApiError(status, str(exc)))

    def _check_access(self, request: Request) -> None:
        """Auth first (401), then the workspace (404), like the real service."""
        key = request.headers.get("x-api-key")
        if not key:
            raise ApiError(401, "Missing API key. Send it in the x-api-key header.")
        if key != self.config.api_key:
            raise ApiError(401, "Invalid API key.")
        workspace = request.path_params["workspace_id"]
        if workspace.lower() != self.config.workspace_id.lower():
            raise ApiError(404, f"Workspace {workspace} not found", {"workspaceId": workspace})

    def _origin(self, request: Request) -> str:
        if self.config.public_origin:
            return self.config.public_origin.rstrip("/")
        host = request.headers.get("host")
        if not host:
            server = request.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{request.scope.get('scheme', 'http')}://{host}"

    def _probe(self, req: StartRequest) -> str | None:
        """Try one record up front: an unsatisfiable schema fails the task
        (as the agent would fail to produce output), instead of succeeding
        with data that does not conform."""
        if req.output_schema is None or req.schema_fp is None:
            return None
        key = req.schema_fp
        with self._probe_lock:
            if key in self._probe_cache:
                return self._probe_cache[key]
        verdict: str | None = None
        try:
            generate(req.output_schema, parameters=req.parameters, seed="probe", rows=1)
        except GenerationError as exc:
            verdict = f"Could not produce output matching outputSchema: {exc}"
        with self._probe_lock:
            self._probe_cache[key] = verdict
            while len(self._probe_cache) > 256:
                self._probe_cache.popitem(last=False)
        return verdict

    # ----------------------------------------------------------------- routes
    async def start(self, request: Request) -> Response:
        cid = _cid()
        try:
            self._check_access(request)
            req = parse_start_body(await request.body())
        except ApiError as err:
            self.state.record_rejection(err.status)
            return error_response(err, cid)
        scripted = self.config.behaviour_for(req).merged(req.magic)
        # An exact result needs no generated data, so the schema need not be satisfiable.
        exact = scripted.data is not None or scripted.file_body is not None
        problem = None if exact else self._probe(req)
        if problem is not None:
            from dataclasses import replace

            from ._config import Behaviour

            forced = Behaviour(outcome="failed", error_code="internal-error", error_message=problem)
            req = replace(req, magic=(req.magic or Behaviour()).merged(forced))
        task_id = self.state.submit(req)
        body = b'{"webTaskId":"' + task_id.encode() + b'","status":"pending"}'
        return Response(body, media_type=_JSON, headers={"x-correlation-id": cid})

    async def result(self, request: Request) -> Response:
        cid = _cid()
        try:
            self._check_access(request)
            task_id = request.path_params["task_id"]
            polled = self.state.poll(task_id)
            if polled is None:
                raise ApiError(404, f"Web task {task_id} not found", {"webTaskId": task_id})
        except ApiError as err:
            self.state.record_rejection(err.status)
            return error_response(err, cid)
        envelope, task = polled
        body = dumps(envelope)
        if envelope["status"] == "completed" and envelope["outcome"] == "success":
            origin = self._origin(request)
            if task.rows > OFFLOAD_ROWS:
                fragment = await run_in_threadpool(self.renderer.result_fragment, task, origin)
            else:
                fragment = self.renderer.result_fragment(task, origin)
            body = body[:-1] + b',"result":' + fragment + b"}"
        return Response(body, media_type=_JSON, headers={"x-correlation-id": cid})

    async def download(self, request: Request) -> Response:
        if "x-api-key" in request.headers:
            # Object stores reject a second auth mechanism next to a signed
            # URL; a client that leaks its API key to the file host fails here.
            self.state.record_credentialed_download()
            self.state.record_rejection(400)
            return _store_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; the x-api-key header must not be "
                "sent with a signed URL",
            )
        name = request.path_params["name"]
        expires = request.query_params.get("expires")
        signature = request.query_params.get("signature")
        if not expires or not signature:
            self.state.record_rejection(403)
            return _store_error(
                403, "AccessDenied", "Query-string authentication requires expires and signature"
            )
        if not self.renderer.verify(name, expires, signature):
            self.state.record_rejection(403)
            return _store_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        now = self.state.time.epoch(self.state.now())
        fault = request.scope.get(SCOPE_FAULT_KEY)
        if fault == "expired" or not expires.isdigit() or now > int(expires):
            self.state.record_rejection(403)
            return _store_error(403, "AccessDenied", "Request has expired")
        task_id, _, extension = name.rpartition(".")
        polled = self.state.poll(task_id)
        task = polled[1] if polled is not None else None
        info = None
        if task is not None and task.final == "completed" and task.outcome == "success":
            info, _, _ = self.renderer.info(task)
        if task is None or info is None or info.mode != "file" or info.extension != extension:
            self.state.record_rejection(404)
            return _store_error(404, "NoSuchKey", "The specified key does not exist.")
        body, file_info = await run_in_threadpool(self.renderer.file_body, task)
        if fault == "truncated":
            body = body[: len(body) * 2 // 3]  # advertised sizeBytes stays the full size
        headers = {
            "x-correlation-id": _cid(),
            "etag": f'"{file_info.size_bytes:x}-{task.id}"',
            "last-modified": time.strftime(
                "%a, %d %b %Y %H:%M:%S GMT",
                time.gmtime(self.state.time.epoch(task.finished or 0.0)),
            ),
        }
        return Response(body, media_type=file_info.content_type, headers=headers)

    async def stats(self, request: Request) -> Response:
        return Response(json.dumps(self.state.stats(), indent=2), media_type=_JSON)

    async def reset_endpoint(self, request: Request) -> Response:
        self.reset()
        return Response(b'{"reset":true}', media_type=_JSON)

    async def cancel(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        outcome = self.state.cancel(task_id)
        if outcome is None:
            return error_response(ApiError(404, f"Web task {task_id} not found"))
        if outcome is False:
            body = {"webTaskId": task_id, "canceled": False, "message": "already terminal"}
            return Response(dumps(body), status_code=409, media_type=_JSON)
        return Response(dumps({"webTaskId": task_id, "canceled": True}), media_type=_JSON)
