"""``flowsamp`` command line: ``flowsamp run [CONFIG.toml] [--out DIR] [--quiet] [--resume]``."""

from __future__ import annotations

import argparse
import sys

from flowsamp.cli.config import ConfigError, load


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowsamp",
        description="Machine-learning-assisted Monte Carlo. "
        "`flowsamp run` with no config runs the embedded default job.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a sampling job (the embedded default, or a TOML config)")
    run.add_argument("config", nargs="?", help="TOML job file (see flowsamp/cli/config.py)")
    run.add_argument("--out", help="output folder (overrides output.dir)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--resume", action="store_true",
                     help="continue a killed run from the checkpoints in its output folder "
                          "(same config; the numbers equal an uninterrupted run)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowsamp`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    from flowsamp.cli.job import run_job  # jax import deferred until after argument parsing

    try:
        config = load(args.config) if args.config else None
    except ConfigError as err:
        print(f"flowsamp: bad config: {err}", file=sys.stderr)
        return 2
    try:
        run_job(config, out_dir=args.out, progress=not args.quiet, resume=args.resume)
    except ConfigError as err:
        print(f"flowsamp: bad config: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
