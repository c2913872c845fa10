"""`python -m galaxy_core.data download|info`: the command line of `galaxy_core.data.galaxy10`."""

from galaxy_core.data.galaxy10 import main

if __name__ == "__main__":
    raise SystemExit(main())
