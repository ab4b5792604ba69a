"""Accuracy proxies of an architecture: zero-cost scores at initialization (`zero_cost`); `evaluate` scores
detections by pycocotools."""
