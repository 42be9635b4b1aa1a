"""Old import path of `xpnet.models.sharing`, kept so existing code runs."""

import sys

from .models import sharing as _module

sys.modules[__name__] = _module
