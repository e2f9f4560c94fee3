"""How closely one model's outputs follow another's on the same samples: an int8 model against its
fp32 source, where labels are missing (natural photos) or say too little (accuracy hides the
confidence int8 can lose)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.card import ModelCard
from edgecnn.runtime.session import Session

DECISIVE = 0.05  # the reference's top-1 probability leads its second by this much: not a near-tie any noise flips


def output_agreement(reference: np.ndarray, outputs: np.ndarray, card: ModelCard) -> dict[str, Any]:
    """Top-1 agreement (every sample, and where the reference is decisive), mean KL(reference ‖ model)
    of the class probabilities, each model's mean top-1 probability, how often the reference's top-1 is
    among the model's top 5, and how many samples flip with the reference's widest lead among them."""
    if reference.shape != outputs.shape:
        raise EdgecnnError(f"the models' outputs differ in shape: {outputs.shape[1:]} against the reference's {reference.shape[1:]}")
    lp, lq = card.log_probabilities(reference), card.log_probabilities(outputs)
    p = np.exp(lp)
    top2 = np.sort(p, axis=1)[:, -2:]
    lead = top2[:, 1] - top2[:, 0]
    decisive = lead >= DECISIVE
    agree = lp.argmax(axis=1) == lq.argmax(axis=1)
    top5 = np.argsort(-lq, axis=1)[:, :5]
    return {
        "samples": len(agree),
        "top1_agreement": float(agree.mean()),
        "decisive_share": float(decisive.mean()),
        "decisive_agreement": float(agree[decisive].mean()) if decisive.any() else None,
        "mean_kl": float((p * (lp - lq)).sum(axis=1).mean()),
        "reference_top1_probability": float(p.max(axis=1).mean()),
        "top1_probability": float(np.exp(lq).max(axis=1).mean()),
        "reference_top1_in_top5": float((top5 == lp.argmax(axis=1)[:, None]).any(axis=1).mean()),
        "flipped": int((~agree).sum()),
        "flipped_widest_lead": float(lead[~agree].max()) if (~agree).any() else None,
    }


def compare_models(model: Path, reference: Path, x: np.ndarray, source: str, threads: int | None = None) -> dict[str, Any]:
    """`model` against `reference` on the samples `x` (from `source`), both through ONNX Runtime."""
    session, ref = Session(model, threads=threads), Session(reference, threads=threads)
    ref.check_input(x)
    session.check_input(x)
    return {"model": str(model), "reference": str(reference), "data": source,
            **output_agreement(ref.predict(x), session.predict(x), session.card)}
