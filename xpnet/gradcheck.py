"""Old import path of `xpnet.teaching.gradcheck`, kept so existing code runs."""

import sys

from .teaching import gradcheck as _module

sys.modules[__name__] = _module
