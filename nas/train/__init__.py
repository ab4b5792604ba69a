"""Training and fine-tuning of any architecture of the space (`nas train`, `NAS(...).train`, the proxies).

`nas.train.options.TrainOptions` (torch-free, read by `nas help`), `nas.train.run.train`, `nas.train.trainer`
(the loop), `loss`, `augment`, `data`, `ema`, `schedule`, `state` (checkpoints), `finetune`, `dist`, `outputs`.
"""
