"""``python -m fiftyone_clipbranches``: the ``clipbranches`` command."""

import sys

from fiftyone_clipbranches.cli import main

sys.exit(main())
