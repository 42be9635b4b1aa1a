"""Models: the graph of layers (`Model`), its chain case (`Sequential`), and loading them back.

`xpnet.models` names what `keras.models` does.
"""

from .functional import Model
from .loading import clone_model, load_model, model_from_json
from .sequential import Sequential

__all__ = ["Model", "Sequential", "clone_model", "load_model", "model_from_json"]
