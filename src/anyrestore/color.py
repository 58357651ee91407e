"""BT.601 luma weights, the one home of them (torch-free constants).

``LUMA`` is the full-range form, JPEG's YCbCr and Pillow's RGB -> L: ``Y = LUMA . RGB``. ``Y_WEIGHTS``
and ``Y_OFFSET`` are the limited (studio) range the ``basicsr`` metric preset uses: for RGB in [0, 1],
``Y = Y_OFFSET + Y_WEIGHTS . RGB`` lies in [16, 235] (``Y_WEIGHTS = 219 * LUMA``, written out exactly).
"""

from __future__ import annotations

LUMA = (0.299, 0.587, 0.114)
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0
