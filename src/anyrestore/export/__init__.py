"""Exporting restorers to other runtimes: ONNX, mapping [0, 1] RGB to [0, 1] RGB like :class:`Restorer`."""

from anyrestore.export.onnx import EXPORTABLE, EXPORTERS, ExportError, ExportReport, OnnxGraph, export_onnx

__all__ = ["EXPORTABLE", "EXPORTERS", "ExportError", "ExportReport", "OnnxGraph", "export_onnx"]
