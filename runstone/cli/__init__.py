"""The ``runstone`` command line.

Layer 6 (the top). One module per verb group: each parses and prints, and
calls the library to do the work. ``main`` maps errors to exit codes in one
place: a ``RunstoneError`` prints one line (no traceback) and exits with the
error's own code; 0 is success, 1 a failed check, 2 a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from runstone._version import __version__
from runstone.cli import (
    artifacts,
    checkpoint,
    config,
    diff,
    env,
    export,
    fsck,
    gc,
    lineage,
    ls,
    quickstart,
    reproduce,
    run,
    server,
    show,
    sync,
    token,
    ui,
    verify,
)
from runstone.errors import FilterError, RunstoneError

__all__ = ["VERBS", "build_parser", "main", "parse_args"]

#: verb modules in the order ``--help`` lists them
VERBS = (
    quickstart,
    run,
    ls,
    show,
    diff,
    reproduce,
    verify,
    ui,
    server,
    token,
    sync,
    config,
    artifacts,
    checkpoint,
    lineage,
    export,
    env,
    fsck,
    gc,
)

_DESCRIPTION = """\
runstone tracks machine-learning runs: params, metrics, the command and its
output, in an embedded store (.runstone/ at the root of your git repository)
or the one RUNSTONE_URI names.
"""
_EPILOG = """\
examples:
  runstone quickstart                         track a small bundled training run
  runstone run -- python train.py --lr 0.1    track any command, unchanged
  runstone ls --filter 'metrics.acc > 0.9' --sort -metrics.acc
  runstone show 0194f3a2                      one run (any unique ID prefix)
  runstone config diff 0194f3a2 0194f3b7      what changed between two runs' configs
  runstone reproduce 0194f3a2 --verify        rebuild a run, rerun it: IDENTICAL, EQUIVALENT or DIVERGED?
  runstone ui                                 browse runs, charts and verdicts in a web browser

Run 'runstone VERB --help' for a verb's options and examples.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"runstone: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="runstone",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"runstone {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for module in VERBS:
        module.register(verbs)
    return parser


#: options whose value may start with "-" (a descending sort), which argparse would take for an option
_DASH_VALUED = ("--sort", "-s")


def _join_dash_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg in _DASH_VALUED and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse a command line (``--sort -metrics.acc`` included: argparse alone refuses it)."""
    raw = list(argv)
    if raw and raw[0] != "run":  # never rewrite a wrapped command's own arguments
        raw = _join_dash_values(raw)
    args, extra = parser.parse_known_args(raw)
    # A verb whose trailing positionals may follow its options (config load PATH --json a=1 b=2)
    # names the list they belong to.
    trailing = getattr(args, "trailing_positionals", None)
    if extra and trailing and not any(word.startswith("-") and "=" not in word for word in extra):
        getattr(args, trailing).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parse_args(parser, sys.argv[1:] if argv is None else argv)
    if args.verb is None:
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
        return code
    except FilterError as e:
        sys.stderr.write(f"runstone: error: {e}\n{e.pointer()}\n")
        return e.exit_code
    except RunstoneError as e:
        sys.stderr.write(f"runstone: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("runstone: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (| head): not an error. Keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as e:
        if os.environ.get("RUNSTONE_DEBUG"):
            raise
        sys.stderr.write(
            f"runstone: internal error: {type(e).__name__}: {e}\n"
            "This is a bug in runstone; run again with RUNSTONE_DEBUG=1 for the traceback "
            "and report it.\n"
        )
        return 70
