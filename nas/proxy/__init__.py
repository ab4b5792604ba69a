"""Accuracy proxies of an architecture; `evaluate` scores detections by pycocotools."""
