"""Old import path of `xpnet.teaching.linear_regression`, kept so existing code runs."""

import sys

from .teaching import linear_regression as _module

sys.modules[__name__] = _module
