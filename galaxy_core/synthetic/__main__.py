"""`python -m galaxy_core.synthetic ...`: the command line of `galaxy_core.synthetic.cli`."""

import sys

from galaxy_core.synthetic.cli import main

sys.exit(main())
