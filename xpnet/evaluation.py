"""Old import path of `xpnet.teaching.evaluation`, kept so existing code runs."""

import sys

from .teaching import evaluation as _module

sys.modules[__name__] = _module
