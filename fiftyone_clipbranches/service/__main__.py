"""``python -m fiftyone_clipbranches.service``: the same as ``clipbranches serve``."""

import sys

from fiftyone_clipbranches.service.cli_command import main

if __name__ == "__main__":
    sys.exit(main())
