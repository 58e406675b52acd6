"""The static frontend: files from one folder at ``/``, ``index.html`` for any other GET.

Starlette's ``StaticFiles`` does the serving (content types, ETag, ranges). It already
resolves each path, symlinks included, and refuses what lands outside its folder;
``Frontend`` checks containment once more itself, so the guarantee that nothing
outside the folder is ever served does not rest on another library's internals.

``serve`` serves the workspace's static folder itself, the binary its packed copy,
and both answer by the rule ``bundle`` packs by (the build side's
``source.static_files``): a link is followed while it stays inside the folder; a path
with a part that starts with a dot (``.env``, ``.git/``), but ``.well-known``, is not
served; and what is not served, or cannot be read, is answered as a path the app
routes (``index.html``), never with an error of the file system.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

SERVED_DOT = ".well-known"  # the one folder with a leading dot that is served


def hidden(path: str) -> bool:
    """Whether a path under the folder is left out of what is served (see the module)."""
    return any(part.startswith(".") and part != SERVED_DOT for part in Path(path).parts)


class Frontend(StaticFiles):
    """A single-page frontend: a request for no file gets ``index.html`` (the app routes)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.root = Path(directory).resolve()
        super().__init__(directory=self.root)

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404:
                raise  # 405 for POST and friends stays as it is
        return await super().get_response("index.html", scope)

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if hidden(path):
            return "", None
        try:
            full_path, stat_result = super().lookup_path(path)
        except (OSError, ValueError):  # a link loop, no access, a NUL: no file to serve
            return "", None
        if stat_result is not None and not self.contains(full_path):
            return "", None
        return full_path, stat_result

    def contains(self, path: str) -> bool:
        """Whether ``path``, with every symlink resolved, lies inside the folder."""
        return Path(path).resolve().is_relative_to(self.root)
