"""Accuracy proxies of an architecture: zero-cost scores at initialization (`zero_cost`), the proxy batch
(`batch`) and the training proxies (`train`: a short training, or inherited weights); mAP by nas.metrics."""
