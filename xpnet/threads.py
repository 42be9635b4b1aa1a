"""Old import path of `xpnet.training.threads`, kept so existing code runs."""

import sys

from .training import threads as _module

sys.modules[__name__] = _module
