"""`python -m galaxy_core.catalog` (see `galaxy_core.catalog.cli`)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from galaxy_core.catalog.cli import main

    sys.exit(main())
