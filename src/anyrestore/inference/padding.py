"""Padding to the model's size multiple: re-exported from its home, :mod:`anyrestore.models.padding`."""

from anyrestore.models.padding import crop_to, pad_amounts, pad_to_multiple, reflect_pad

__all__ = ["crop_to", "pad_amounts", "pad_to_multiple", "reflect_pad"]
