"""Old import path of `xpnet.teaching.perceptron`, kept so existing code runs."""

import sys

from .teaching import perceptron as _module

sys.modules[__name__] = _module
