"""Old import path of `xpnet.teaching.parity`, kept so existing code runs."""

import sys

from .teaching import parity as _module

sys.modules[__name__] = _module
