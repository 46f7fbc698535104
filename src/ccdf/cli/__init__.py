"""The ``ccdf`` command line: arguments -> config -> library call.  Errors are one line."""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import sys
import threading
from importlib import metadata

from . import bench, models, solve, train
from .args import MODELS_SEEN, CLIError, set_threads

__all__ = ["main", "build_parser", "set_threads", "CLIError", "Terminated"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM preemption and torchrun send), handled exactly like Ctrl-C: the
    temporary files and the lock are removed on the way out, finished outputs stay."""


class _Formatter(argparse.HelpFormatter):
    """Shows each flag's default (when it has one worth showing)."""

    def _get_help_string(self, action):
        h = action.help or ""
        shown = action.default is not None and action.default is not False and \
            action.default not in ("", argparse.SUPPRESS)
        if "%(default)" not in h and shown and action.option_strings and action.nargs != 0:
            h += " (default: %(default)s)"
        return h


class _Parser(argparse.ArgumentParser):
    """argparse with suggestions: a misspelt flag or choice gets the (sub)command's usage and
    the closest valid spelling (difflib)."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)

    def error(self, message):
        if "invalid choice:" in message:
            try:
                bad = message.split("invalid choice: ")[1].split("'")[1]
                opts = message.split("(choose from ")[1].rstrip(")").replace("'", "").split(", ")
                near = difflib.get_close_matches(bad, opts, n=1, cutoff=0.5)
                if near:
                    message += f"; did you mean {near[0]!r}?"
            except IndexError:
                pass
        super().error(message)

    def suggest(self, unknown: list) -> None:
        """Exit 2 naming the unrecognised arguments, with the nearest flag of this parser."""
        flags = [o for a in self._actions for o in a.option_strings]
        msg = f"unrecognized argument{'s' if len(unknown) > 1 else ''}: {' '.join(unknown)}"
        for u in unknown:
            near = difflib.get_close_matches(u.split("=")[0], flags, n=1, cutoff=0.6) \
                if u.startswith("-") else []
            if near:
                msg += f"; did you mean {near[0]}?"
                break
        self.error(msg)


def _version() -> str:
    try:
        return metadata.version("ccdf")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``ccdf`` parser: one subcommand per command, each with ``func`` (args -> exit code)."""
    p = _Parser(prog="ccdf", description=__doc__ + "  " + MODELS_SEEN + ".")
    p.add_argument("--version", action="version", version=f"ccdf {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    models.add_parsers(sub)         # sample, inspect
    bench.add_parsers(sub)          # demo, bench, calibrate-t0
    solve.add_parser(sub)           # solve
    train.add_parsers(sub)          # train, train-restorer, train-sr3, train-esrgan, ...
    bench.add_theory_parser(sub)    # theory
    return p


def _parse(parser, argv):
    """parse_args, but an unknown flag is answered by its subcommand's usage and the closest
    flag (difflib) rather than by the top-level usage."""
    a, unknown = parser.parse_known_args(argv)
    if unknown:
        subs = parser._subparsers._group_actions[0].choices
        subs.get(a.command, parser).suggest(unknown)
    return a


def main(argv=None) -> int:
    parser = build_parser()
    a = _parse(parser, argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in trained models
    old = None
    try:
        if hasattr(a, "threads"):
            set_threads(a.threads)
        old = _on_sigterm()
        return a.func(a)
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated)
        what = "terminated (SIGTERM)" if term else "interrupted"
        more = "; finished outputs are kept: rerun the same command to resume" \
            if a.command == "solve" else ""
        print(f"ccdf {a.command}{_rank()}: {what}{more}", file=sys.stderr)
        code = 143 if term else 130
        if argv is None and threading.active_count() > 1:
            # batch worker threads may still sit inside torch; a normal interpreter exit would
            # destroy their C++ threads and abort: the clean-up is done, so leave at once
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except (CLIError, ValueError, OSError, RuntimeError, ArithmeticError) as e:
        from ..io import one_line  # torch: after set_threads

        print(f"ccdf {a.command}{_rank()}: error: {one_line(e)}", file=sys.stderr)
        return 2
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _on_sigterm():
    """Turn SIGTERM into ``Terminated`` (once: a second one during the clean-up is ignored).
    Returns the previous handler (None off the main thread, where signals cannot be set)."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _rank() -> str:
    """' (rank R of W)' under torchrun, so that each rank's line says whose it is."""
    w = os.environ.get("WORLD_SIZE", "1")
    return f" (rank {os.environ.get('RANK', '?')} of {w})" if w not in ("", "1") else ""
