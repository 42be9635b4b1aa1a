"""Old import path of `xpnet.training.checkpoint`, kept so existing code runs."""

import sys

from .training import checkpoint as _module

sys.modules[__name__] = _module
