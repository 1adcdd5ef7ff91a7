"""relsum: query-relevant product summaries trained with RL against a frozen cross-encoder ranker."""

import sys
from importlib.util import spec_from_file_location
from pathlib import Path

__version__ = "0.1.0"

#: Repository folders installed under the ``relsum`` namespace (``[tool.setuptools] package-dir``).
SOURCE_FOLDERS = {"relsum.pipelines": "pipelines", "relsum.evaluation": "evaluation", "relsum.sql": "sql"}


class SourceLayoutFinder:
    """Finds ``relsum.pipelines`` / ``.evaluation`` / ``.sql`` in a source checkout, beside this package.

    A wheel installs them inside the package and an editable install maps them with its own finder,
    but Python puts the current folder first on ``sys.path``: run from the repository root, ``import
    relsum`` finds this source folder even when a wheel is installed, and the three would be missing.
    Only those three names are served (not ``tests`` or ``benchmarks``).
    """

    root = Path(__file__).resolve().parent.parent

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        folder = SOURCE_FOLDERS.get(fullname)
        if folder is None:
            return None
        init = cls.root / folder / "__init__.py"
        return spec_from_file_location(fullname, init, submodule_search_locations=[str(init.parent)])


if not (SourceLayoutFinder.root / "relsum" / "pipelines").is_dir() and (
        SourceLayoutFinder.root / "pipelines" / "__init__.py").is_file():
    sys.meta_path.append(SourceLayoutFinder)
