"""Old import path of `xpnet.apps.cli`, kept so `python -m xpnet.cli` and existing code run."""

import sys

from .apps import cli as _module

if __name__ == "__main__":
    sys.exit(_module.main())
sys.modules[__name__] = _module
