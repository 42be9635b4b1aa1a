"""Models: the graph of layers (`Model`), its chain case (`Sequential`), and loading them back.

`xpnet.models` names what `keras.models` does.
"""

from .functional import Model
from .sequential import Sequential, clone_model, load_model, model_from_json

__all__ = ["Model", "Sequential", "clone_model", "load_model", "model_from_json"]
