"""``webtask-frames sandbox``: serve the sandbox with uvicorn in the foreground.

The main CLI calls :func:`configure_parser` on its ``sandbox`` sub-parser and
:func:`run` with the parsed arguments; ``python -m webtask_frames.sandbox``
does the same standalone. Precedence: defaults < ``--config FILE`` < flags.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._config import (
    CAP_MODES,
    ENDPOINTS,
    ERROR_CODES,
    FILE_FORMATS,
    ConfigError,
    FaultRates,
    SandboxConfig,
    as_sequence,
)

__all__ = ["build_config", "configure_parser", "run"]

EPILOG = """\
examples:
  # a local Web Tasks API on port 8765, 100x faster than real time
  webtask-frames sandbox --port 8765 --time-scale 0.01

  # a flaky network: 10% 503s and 5% dropped connections on result polls
  webtask-frames sandbox --fault-503 0.1 --fault-drop 0.05 --fault-endpoints result

  # a busy workspace: 3 slots, extra tasks fail with workspace-rate-limited
  webtask-frames sandbox --cap 3 --cap-mode fail

  # scenario from a JSON file (same keys as SandboxConfig), flags win
  webtask-frames sandbox --config scenario.json --seed 7

per-task scripting: send {"parameters": {"_sandbox": {"outcome": "failed",
"error_code": "timeout", "duration_s": 0.5, "rows": 5000, "result": "file",
"file_format": "ndjson"}}}; the "_sandbox" key is stripped before use.
inspect: GET /_sandbox/stats, POST /_sandbox/reset, POST /_sandbox/cancel/{id}.
"""

# (flag, config key, type, help)
_SIMPLE_OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("--api-key", "api_key", str, "API key to accept in x-api-key (default: sandbox-key)"),
    ("--workspace-id", "workspace_id", str, "workspace id to serve (default: a fixed UUID)"),
    ("--seed", "seed", int, "seed for data, durations, outcomes and faults (default: 0)"),
    ("--time-scale", "time_scale", float, "real seconds per virtual second; 0.01 = 100x faster"),
    ("--duration-s", "duration_s", float, "fixed run duration in seconds (default: 2-8 s per key)"),
    ("--start-latency-s", "start_latency_s", float, "pending -> started delay (default: 0.5)"),
    ("--rows", "rows", int, "rows in the main result list (default: 25)"),
    ("--inline-max-bytes", "inline_max_bytes", int, "larger results become files (65536)"),
    ("--file-ttl-s", "file_ttl_s", float, "signed file URL lifetime (default: 7 days)"),
    ("--cap", "cap", int, "max concurrently running tasks per workspace (default: 10)"),
    ("--outcome-failure-rate", "outcome_failure_rate", float, "share of tasks that fail"),
    (
        "--invalid-row-rate",
        "invalid_row_rate",
        float,
        "share of result records that break the outputSchema (default: 0)",
    ),
    (
        "--rate-limited-outcome-rate",
        "rate_limited_outcome_rate",
        float,
        "share of tasks that fail with workspace-rate-limited",
    ),
    (
        "--fault-start-after-accept",
        "fault_start_after_accept",
        float,
        "chance a 500/502/504/drop on start hits after the task was created (default: 0.5)",
    ),
    ("--slow-delay-s", "slow_delay_s", float, "delay of a 'slow' fault in real seconds (1.0)"),
    ("--retry-after-s", "retry_after_s", int, "Retry-After header on 429/503 (default: 1)"),
    ("--public-origin", "public_origin", str, "origin used in file URLs (default: request host)"),
)
_FAULT_FLAGS = (
    ("--fault-429", "http_429", "429 Too Many Requests (with Retry-After)"),
    ("--fault-500", "http_500", "500 with a JSON error body"),
    ("--fault-502", "http_502", "502 from the gateway (HTML body)"),
    ("--fault-503", "http_503", "503 with Retry-After"),
    ("--fault-504", "http_504", "504 from the gateway (HTML body)"),
    ("--fault-drop", "drop", "connection closed without a response"),
    ("--fault-slow", "slow", "response delayed by --slow-delay-s"),
    ("--fault-expired", "expired", "download answered 403 'Request has expired'"),
    ("--fault-truncated", "truncated", "download body shorter than sizeBytes"),
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add all sandbox options (with help and examples) to ``parser``."""
    parser.description = (
        "Serve an offline stand-in for the Intuned Web Tasks API (start, result, "
        "signed file downloads) with realistic timing, reuse, costs and faults."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    net = parser.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    net.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 = any free)")
    net.add_argument("--config", metavar="FILE", help="JSON file with SandboxConfig keys")
    net.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn log level (default: warning)",
    )
    sim = parser.add_argument_group("simulation")
    for flag, key, type_, help_ in _SIMPLE_OPTIONS:
        metavar = "N" if type_ is int else ("S" if key.endswith("_s") else "X")
        is_probability = key.endswith(("rate", "after_accept"))
        metavar = "TEXT" if type_ is str else ("P" if is_probability else metavar)
        sim.add_argument(flag, dest=key, type=type_, default=None, metavar=metavar, help=help_)
    sim.add_argument(
        "--cap-mode",
        dest="cap_mode",
        choices=CAP_MODES,
        default=None,
        help="queue: extra tasks wait; fail: they fail workspace-rate-limited",
    )
    sim.add_argument(
        "--file-format",
        dest="file_format",
        choices=FILE_FORMATS,
        default=None,
        help="file results as JSON or NDJSON (list results) (default: json)",
    )
    sim.add_argument(
        "--failure-codes",
        dest="failure_codes",
        default=None,
        metavar="CODES",
        help=f"comma list of error codes for random failures; from: {', '.join(ERROR_CODES)}",
    )
    faults = parser.add_argument_group("faults (probabilities per request, seeded)")
    for flag, key, help_ in _FAULT_FLAGS:
        faults.add_argument(
            flag, dest=f"fault_{key}", type=float, default=None, metavar="P", help=help_
        )
    faults.add_argument(
        "--fault-endpoints",
        default=None,
        metavar="LIST",
        help=f"comma list of endpoints the fault flags apply to (default: {','.join(ENDPOINTS)})",
    )


def build_config(args: argparse.Namespace) -> SandboxConfig:
    """The :class:`SandboxConfig` described by parsed arguments."""
    config = SandboxConfig()
    if getattr(args, "config", None):
        config = SandboxConfig.from_file(args.config)
    changes: dict[str, Any] = {}
    for _, key, _, _ in _SIMPLE_OPTIONS:
        value = getattr(args, key, None)
        if value is not None:
            changes[key] = value
    for key in ("cap_mode", "file_format"):
        if getattr(args, key, None) is not None:
            changes[key] = getattr(args, key)
    if getattr(args, "failure_codes", None):
        changes["failure_codes"] = as_sequence(args.failure_codes)
    rates = {key: getattr(args, f"fault_{key}", None) for _, key, _ in _FAULT_FLAGS}
    given = {k: v for k, v in rates.items() if v is not None}
    if given:
        endpoints = as_sequence(getattr(args, "fault_endpoints", None) or ",".join(ENDPOINTS))
        for endpoint in endpoints:
            if endpoint not in ENDPOINTS:
                raise ConfigError(f"--fault-endpoints: unknown endpoint {endpoint!r}")
        flag_rates = FaultRates(**given)
        faults = dict(config.faults)
        for endpoint in endpoints:
            faults[endpoint] = faults[endpoint].merged(flag_rates)
        changes["faults"] = faults
    elif getattr(args, "fault_endpoints", None):
        raise ConfigError("--fault-endpoints given without any --fault-* rate")
    try:
        return config.replace(**changes) if changes else config
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted. Returns 0, or 2 for bad options or a port that is taken."""
    prog = "webtask-frames sandbox"
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    from ._server import bind_socket, create_app, make_server

    host, port = args.host, args.port
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        # A usage problem like any other bad option: one line naming the fix, exit 2.
        hint = "; pass another --port, or --port 0 for any free one" if port else ""
        print(
            f"{prog}: error: cannot listen on {host}:{port}: {exc.strerror or exc}{hint}",
            file=sys.stderr,
        )
        return 2
    port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown_host}:{port}{config.prefix}"
    app = create_app(config)
    server = make_server(app, log_level=args.log_level)
    print(
        f"Web Tasks sandbox at {base_url} (api key {config.api_key}, workspace "
        f"{config.workspace_id}); export INTUNED_BASE_URL={base_url} "
        f"INTUNED_API_KEY={config.api_key} INTUNED_WORKSPACE_ID={config.workspace_id}",
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
