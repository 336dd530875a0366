"""`rdec jpeg ...` subcommands (registered into the rdec CLI)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("jpeg", help="ECEA: JPEG-compatible encryption (encrypt, decrypt, eval, stream)",
                       description="ECEA: keyed pixel-block encryption, JPEG compression, keyed DC permutation.")
    jsub = p.add_subparsers(dest="jpeg_command", metavar="JPEG_COMMAND", required=True)
    del jsub  # commands are added as the ECEA modules land
