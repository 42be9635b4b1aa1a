"""Old import path of `xpnet.io.saving`, kept so existing code runs."""

import sys

from .io import saving as _module

sys.modules[__name__] = _module
