"""Old import path of `xpnet.io.keras_format`, kept so existing code runs."""

import sys

from .io import keras_format as _module

sys.modules[__name__] = _module
