"""nanobuild: fuse a monorepo of Python services into one self-contained executable.

The package has two sides that never mix:

* the build side (``cli``, ``workspace``, ``graph``, ``checks``, ``diagnostics``, ...)
  reads ``nano.toml``, proves the workspace sound and packs it;
* the runtime (``nanobuild.runtime``) is what ships inside every binary; it imports
  nothing from the build side.
"""

from nanobuild.runtime.spec import __version__

__all__ = ["__version__"]
