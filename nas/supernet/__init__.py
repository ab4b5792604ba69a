"""The elastic supernet of a search space: one set of weights, every architecture of the space a sub-network.

from nas.supernet import SuperNet
net = SuperNet("yolo_nas", num_classes=80)      # or load_supernet("runs/supernet/exp/last.pt")
model = net.extract(arch)                       # a plain nas.models.build(arch) network, shared weights
"""

from nas.supernet.net import SuperNet
from nas.supernet.score import score, supernet_digest
from nas.supernet.train import Sandwich, SupernetOptions, distill_loss, load_supernet, save_supernet, train_supernet
from nas.supernet.weights import extract_weights, save_supernet_weights

__all__ = [
    "Sandwich",
    "SuperNet",
    "SupernetOptions",
    "distill_loss",
    "extract_weights",
    "load_supernet",
    "save_supernet",
    "save_supernet_weights",
    "score",
    "supernet_digest",
    "train_supernet",
]
