"""The static frontend: files from one folder at ``/``, ``index.html`` for any other GET.

Starlette's ``StaticFiles`` does the serving (content types, ETag, ranges). It already
resolves each path, symlinks included, and refuses what lands outside its folder;
``Frontend`` checks containment once more itself, so the guarantee that nothing
outside the folder is ever served does not rest on another library's internals.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope


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
        full_path, stat_result = super().lookup_path(path)
        if stat_result is not None and not self.contains(full_path):
            return "", None
        return full_path, stat_result

    def contains(self, path: str) -> bool:
        """Whether ``path``, with every symlink resolved, lies inside the folder."""
        return Path(path).resolve().is_relative_to(self.root)
