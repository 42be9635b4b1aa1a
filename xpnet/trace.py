"""Old import path of `xpnet.teaching.trace`, kept so existing code runs."""

import sys

from .teaching import trace as _module

sys.modules[__name__] = _module
