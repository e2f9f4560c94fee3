"""The training half: nets, Lite0, augmentation, the fit loop, pruning and export. torch lives here only."""
