"""Old import path of `xpnet.teaching.experiments`, kept so existing code runs."""

import sys

from .teaching import experiments as _module

sys.modules[__name__] = _module
