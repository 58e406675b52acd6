"""Make the example workspace's packages importable for the services' own unit tests."""

import os
import sys
from pathlib import Path

from nanobuild import workspace

os.environ.setdefault("NANO_STRICT", "1")

for folder in workspace.load(Path(__file__).parent).import_paths():
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
