"""``python -m nanobuild.runtime ARGS``: the binary's command line, for a spec on stdin.

``nanobuild serve`` runs the workspace from source this way: it describes the
workspace as an ``AppSpec``, starts this module in a child Python with the
workspace's folders on ``PYTHONPATH``, and writes the spec and build facts to its
standard input as JSON. The child then wires and serves exactly as a bundled binary
does, and the build side never imports more of the runtime than its data.
"""

from __future__ import annotations

import os
import sys

import msgspec

from nanobuild.runtime import binary
from nanobuild.runtime.spec import AppSpec, BuildInfo


class Launch(msgspec.Struct, frozen=True):
    """What the launcher writes to standard input."""

    spec: AppSpec
    build: BuildInfo
    prog: str = "nanobuild"  # how messages name the command


def main() -> None:
    try:
        launch = msgspec.json.decode(sys.stdin.buffer.read(), type=Launch)
    except msgspec.DecodeError as exc:
        sys.exit(f"python -m nanobuild.runtime: standard input is not a launch: {exc}")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.argv[0] = launch.prog
    binary.main(launch.spec, launch.build, sys.argv[1:])


if __name__ == "__main__":
    main()
