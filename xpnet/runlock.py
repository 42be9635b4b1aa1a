"""Old import path of `xpnet.training.runlock`, kept so existing code runs."""

import sys

from .training import runlock as _module

sys.modules[__name__] = _module
