"""The `rdec` console command: one parser, subcommands registered by each part of the package.

Bad input never shows a traceback: every RdecError (and OS error on user files) becomes one line
`rdec: error: ...` on stderr and a non-zero exit status. Modules that register subcommands import their
heavy dependencies (torch, OpenCV) only inside the command that needs them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import RdecError
from .interrupts import StopSignals, is_interrupt

# Each module has `register(subparsers)` adding its commands with `set_defaults(func=...)`.
COMMAND_MODULES = ("rdec.secure_jpeg.cli", "rdec.export.cli")

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _keygen(args: argparse.Namespace) -> int:
    from .keys import write_key_file

    write_key_file(args.keyfile, overwrite=args.force)
    print(f"wrote a new 256-bit key to {args.keyfile} (mode 0600)", file=sys.stderr)
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes, too, as one line `rdec: error: ...` (exit status 2, as argparse)."""

    def error(self, message: str):
        self.exit(2, f"rdec: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rdec",
        description="Protect camera images: JPEG-compatible ECEA encryption and reversed-diffusion codecs.",
    )
    parser.add_argument("--version", action="version", version=f"rdec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("keygen", help="write a new 256-bit secret key file (mode 0600)",
                       description="Write a new random 256-bit key to KEYFILE (mode 0600). The key is never printed.")
    p.add_argument("keyfile", metavar="KEYFILE")
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p.set_defaults(func=_keygen)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _say(kind: str, message) -> None:
    """`rdec: KIND: message` as exactly one line (a file name may hold a newline)."""
    print(f"rdec: {kind}: " + str(message).replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings (ours and the libraries') as one line, without the source line that Python shows."""
    _say("warning", message)


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _one_line_warning
    with StopSignals().installed() as stop:
        try:
            parser = build_parser()  # inside the try: Ctrl-C while the modules load is an interrupt too
            args = parser.parse_args(argv)
            args.stop = stop  # the stream commands check it between frames
            return int(args.func(args) or 0)
        except SystemExit:
            raise
        except BaseException as e:
            if is_interrupt(e, stop):
                print("rdec: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            if isinstance(e, (RdecError, OSError)):
                _say("error", e)
            elif isinstance(e, MemoryError):
                _say("error", "out of memory")
            else:
                raise
            return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
