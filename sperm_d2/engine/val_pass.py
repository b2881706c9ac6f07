"""The forward pass of an evaluation round: a batch of val images gives its per-image training
losses (the validation loss) and its predictions (the evaluation) from one preprocessing, one
backbone and one RPN head.

Only the parts that act the same in training and inference are shared. What differs stays
detectron2's own code in its own mode: the RPN's anchor sampling, its losses and its proposals
(train or test top-k) come from the RPN's methods, and the ROI heads run once in training mode
per image (sampled ROIs, losses) and once in inference mode (all proposals, NMS, masks). Each
image's losses are computed on that image alone, as a batch of one would: the ROI-head losses
are means over an image's sampled ROIs, so a batch would weight images by their ROI counts.
Models this does not hold for (BatchNorm or dropout in the backbone, another meta-architecture,
an RPN or forward of their own, training visualisation) take the plain route: the model called
per image in training mode, then on the batch in inference mode.
"""

from __future__ import annotations

from typing import Any

import torch
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.structures import ImageList
from torch import nn

#: layers whose output depends on the training flag: a backbone holding one cannot serve the
#: training-mode losses and the inference-mode predictions with one set of features
MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def shares_features(module: nn.Module) -> bool:
    """Whether :func:`losses_and_predictions` may compute ``module``'s backbone and RPN head
    once for both modes: detectron2's own GeneralizedRCNN forward and RPN, no training
    visualisation, no layer in the backbone or the RPN head that acts differently in training."""
    if not isinstance(module, GeneralizedRCNN) or type(module.proposal_generator) is not RPN:
        return False
    own = (
        type(module).forward is GeneralizedRCNN.forward
        and type(module).inference is GeneralizedRCNN.inference
        and type(module).preprocess_image is GeneralizedRCNN.preprocess_image
    )
    shared = (module.backbone, module.proposal_generator.rpn_head)
    return (
        own
        and module.vis_period <= 0
        and not any(isinstance(m, MODE_DEPENDENT) for s in shared for m in s.modules())
    )


def _rpn_head(rpn: RPN, features: dict[str, torch.Tensor]):
    """RPN.forward's first half: anchors and the head's outputs, flattened per image the way
    RPN.forward flattens them (objectness (N, sum HWA), deltas (N, sum HWA, box_dim))."""
    feats = [features[f] for f in rpn.in_features]
    anchors = rpn.anchor_generator(feats)
    logits, deltas = rpn.rpn_head(feats)
    logits = [score.permute(0, 2, 3, 1).flatten(1) for score in logits]
    box_dim = rpn.anchor_generator.box_dim
    deltas = [
        x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1])
        .permute(0, 3, 4, 1, 2)
        .flatten(1, -2)
        for x in deltas
    ]
    return anchors, logits, deltas


def _image_losses(
    module: GeneralizedRCNN,
    inputs: list[dict],
    images: ImageList,
    features: dict[str, torch.Tensor],
    rpn_out: tuple,
) -> list[dict[str, float]]:
    """Each image's training losses (RPN.forward's second half in training mode, then the ROI
    heads in training mode), from its slice of the batch's features and RPN head outputs."""
    rpn = module.proposal_generator
    anchors, logits, deltas = rpn_out
    module.train()
    out = []
    for i, inp in enumerate(inputs):
        one = slice(i, i + 1)
        gt = [inp["instances"].to(module.device)]
        image = ImageList(images.tensor[one], images.image_sizes[one])
        feats = {k: v[one] for k, v in features.items()}
        logits_i, deltas_i = [x[one] for x in logits], [x[one] for x in deltas]
        gt_labels, gt_boxes = rpn.label_and_sample_anchors(anchors, gt)
        losses = rpn.losses(anchors, logits_i, gt_labels, deltas_i, gt_boxes)
        proposals = rpn.predict_proposals(anchors, logits_i, deltas_i, image.image_sizes)
        _, detector_losses = module.roi_heads(image, feats, proposals, gt)
        # GeneralizedRCNN.forward's order: detector losses, then the RPN's
        out.append({k: float(v) for k, v in {**detector_losses, **losses}.items()})
    return out


def _predictions(
    module: GeneralizedRCNN,
    inputs: list[dict],
    images: ImageList,
    features: dict[str, torch.Tensor],
    rpn_out: tuple,
) -> list[dict]:
    """GeneralizedRCNN.inference from the batch's features: test-time proposals, the ROI heads
    in inference mode, outputs rescaled to each input's height and width."""
    rpn = module.proposal_generator
    module.eval()
    proposals = rpn.predict_proposals(*rpn_out, images.image_sizes)
    results, _ = module.roi_heads(images, features, proposals, None)
    return GeneralizedRCNN._postprocess(results, inputs, images.image_sizes)


def losses_and_predictions(
    module: nn.Module, inputs: list[dict], losses: bool, predict: bool
) -> tuple[list[dict[str, float]] | None, list[dict[str, Any]] | None]:
    """Per-image training losses (``losses``) and inference outputs (``predict``) of one batch.

    ``inputs`` are DatasetMapper dicts with ``instances`` (when ``losses``) whose images pad to
    the same size, so that each image's features equal those of a batch of one. Call under
    ``torch.no_grad``; leaves ``module`` in inference mode.
    """
    image_losses = outputs = None
    if not shares_features(module):
        if losses:
            module.train()
            image_losses = [{k: float(v) for k, v in module([x]).items()} for x in inputs]
        if predict:
            module.eval()
            outputs = module(inputs)
        module.eval()
        return image_losses, outputs
    module.eval()
    images = module.preprocess_image(inputs)
    features = module.backbone(images.tensor)
    rpn_out = _rpn_head(module.proposal_generator, features)
    if losses:
        image_losses = _image_losses(module, inputs, images, features, rpn_out)
    if predict:
        outputs = _predictions(module, inputs, images, features, rpn_out)
    module.eval()
    return image_losses, outputs
