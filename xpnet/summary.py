"""Old import path of `xpnet.models.summary`, kept so existing code runs."""

import sys

from .models import summary as _module

sys.modules[__name__] = _module
