"""Image files in and out: formats, bit depths, alpha, EXIF orientation, atomic writes."""

from anyrestore.errors import ImageError
from anyrestore.io.image import (
    MAX_PIXELS,
    READ_EXTENSIONS,
    WRITE_FORMATS,
    ImageData,
    atomic_output,
    format_for_suffix,
    list_images,
    read_image,
    read_tensor,
    remove_stale_temporaries,
    write_atomically,
    write_image,
)

__all__ = [
    "MAX_PIXELS",
    "READ_EXTENSIONS",
    "WRITE_FORMATS",
    "ImageData",
    "ImageError",
    "atomic_output",
    "format_for_suffix",
    "list_images",
    "read_image",
    "read_tensor",
    "remove_stale_temporaries",
    "write_atomically",
    "write_image",
]
