"""The `genae` command's entry point. It sets the process up (threads, OpenMP waiting,
denormals: genae/runtime.py) before torch loads, then runs the command (genae/commands.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from genae.errors import GenaeError
from genae.runtime import start_process

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        start_process(arguments)
    except GenaeError as exc:
        print(f"genae: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # why: genae.commands loads torch, whose OpenMP runtime reads what start_process has set
    from genae.commands import run

    return run(arguments)


if __name__ == "__main__":
    sys.exit(main())
