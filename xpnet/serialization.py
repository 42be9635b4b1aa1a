"""Old import path of `xpnet.io.serialization`, kept so existing code runs."""

import sys

from .io import serialization as _module

sys.modules[__name__] = _module
