"""Old import path of `xpnet.training.callbacks`, kept so existing code runs."""

import sys

from .training import callbacks as _module

sys.modules[__name__] = _module
