"""Accuracy proxies of an architecture: zero-cost scores at initialization (`nas.proxy.zero_cost`)."""
