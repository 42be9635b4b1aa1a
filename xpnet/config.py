"""Old import path of `xpnet.io.config`, kept so existing code runs."""

import sys

from .io import config as _module

sys.modules[__name__] = _module
