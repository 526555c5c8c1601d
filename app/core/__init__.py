"""The neutral bottom layer: types and numeric helpers every other layer may use.

Nothing here imports from the rest of ``app``; imaging, models, index and enrich meet here
instead of importing one another sideways or upwards.
"""

from app.core.numeric import l2_normalize, softmax
from app.core.types import InputSpec, Label

__all__ = ["InputSpec", "Label", "l2_normalize", "softmax"]
