"""``python -m webtask_frames.sandbox``: the sandbox CLI without the main CLI."""

from __future__ import annotations

import argparse
import sys

from ._cli import configure_parser, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and serve; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m webtask_frames.sandbox")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
