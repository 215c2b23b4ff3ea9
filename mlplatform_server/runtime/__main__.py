"""``python -m mlplatform_server.runtime train|batch-predict|serve`` (see the package docstring)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence

from .context import ENV_VARS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlplatform_server.runtime",
        description="Run one action of a notebook model (DESIGN.md §1). Every option defaults to its "
        "MLP_* environment variable; a flag given here overrides it.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--module-path", help=f"the model module (.py); ${ENV_VARS['module_path']}")
        p.add_argument("--artifacts", help=f"artifacts directory; ${ENV_VARS['artifacts']}")
        p.add_argument("--hyperparameters", metavar="JSON",
                       help=f"JSON object of hyperparameters (used as is); ${ENV_VARS['hyperparameters']}; "
                       "default: the class's hyperparameters")
        p.add_argument("--run-id", help=f"${ENV_VARS['run_id']}")
        p.add_argument("--url", help=f"platform API base URL, for metrics; ${ENV_VARS['url']}")
        p.add_argument("--run-token", help=f"run-scoped API token; prefer ${ENV_VARS['run_token']} "
                       "(a command line is visible to other users)")
        p.add_argument("--run-token-file", help="a file holding the run token, read for each request")

    def job(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("--result-path", help=f"where to write the JSON result; ${ENV_VARS['result_path']}")

    job(sub.add_parser("train", help="run Model.train()"))
    batch = sub.add_parser("batch-predict", help="run Model.batch_predict()")
    job(batch)
    batch.add_argument("--inputs", help=f"input path (file or directory); ${ENV_VARS['inputs']}")
    batch.add_argument("--outputs", help=f"output path; its parent is created; ${ENV_VARS['outputs']}")
    srv = sub.add_parser("serve", help="serve Model.predict() over HTTP (GET /ping, POST /invocations)")
    common(srv)
    srv.add_argument("--port", help=f"${ENV_VARS['port']}; default 8080; 0 picks a free port")
    srv.add_argument("--host", help=f"${ENV_VARS['host']}; default 0.0.0.0")
    srv.add_argument("--workers", help=f"worker processes; ${ENV_VARS['workers']}; default 1")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k != "action"}
    if args.action == "serve":
        from .serve import serve

        return serve(flags)
    from .jobs import run_job

    return run_job(args.action, flags)


def _exit(code: int) -> None:
    """Exit with ``code``; if the user's non-daemon threads keep the interpreter alive, stop anyway
    after a grace period (the backend waits for the process to end, the result is already written)."""
    timer = threading.Timer(30.0, lambda: (sys.stdout.flush(), sys.stderr.flush(), os._exit(code)))
    timer.daemon = True
    timer.start()
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())
