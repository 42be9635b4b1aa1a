"""Old import path of `xpnet.training.distributed`, kept so existing code runs."""

import sys

from .training import distributed as _module

sys.modules[__name__] = _module
