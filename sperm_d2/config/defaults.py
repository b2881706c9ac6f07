"""Project config keys: all under ``cfg.SPERM``, each with a ``(type) meaning`` comment."""

from detectron2.config import CfgNode as CN


def add_sperm_config(cfg: CN) -> None:
    """Add the ``cfg.SPERM.*`` keys (and their defaults) to a detectron2 config, in place.

    Only new keys are added; detectron2's own defaults are never changed here (experiment YAMLs
    say what differs from detectron2's defaults).
    """
    _C = cfg
    _C.SPERM = CN()
    # (list[str]) class names in category-id order: id 1 is CLASSES[0]. Fixed by the list, never by
    # first appearance in the data, so train/val/test and every run agree.
    _C.SPERM.CLASSES = ["good", "bad"]
    # (list[list[int]]) RGB colour per class for overlays and plots, same order as CLASSES.
    _C.SPERM.CLASS_COLORS = [[40, 200, 80], [230, 50, 50]]
    # (str) dataset root holding annotations/{train,val,test}.json and the images they name;
    # empty -> $SPERM_D2_DATASETS, then ./datasets/sperm.
    _C.SPERM.DATA_ROOT = ""
    # (str) name prefix of the registered splits: "<prefix>_train", "<prefix>_val", "<prefix>_test".
    _C.SPERM.DATASET_PREFIX = "sperm"

    # Schedule in epochs, a convenience over SOLVER.MAX_ITER (see sperm_d2.config.schedule).
    # (int) train for this many passes over the training set; 0 keeps SOLVER.MAX_ITER/STEPS.
    _C.SPERM.EPOCHS = 0
    # (list[float]) LR decay points as fractions of the schedule (used when EPOCHS > 0).
    _C.SPERM.STEP_FRACTIONS = [0.67, 0.89]
    # (int) evaluate every this many epochs (used when EPOCHS > 0; 0 keeps TEST.EVAL_PERIOD).
    _C.SPERM.EVAL_EVERY_EPOCHS = 1

    # Online training augmentation (sperm_d2.data.augment), applied after detectron2's own
    # INPUT.* resize and INPUT.RANDOM_FLIP; every default below is off.
    _C.SPERM.AUG = CN()
    # (float) probability of a vertical flip (heads have no preferred orientation).
    _C.SPERM.AUG.VFLIP_PROB = 0.0
    # (bool) rotate by a random multiple of 90 degrees (exact for masks, no interpolation).
    _C.SPERM.AUG.ROT90 = False
    # (list[float]) brightness factor range; [1, 1] disables it.
    _C.SPERM.AUG.BRIGHTNESS = [1.0, 1.0]
    # (list[float]) contrast factor range; [1, 1] disables it.
    _C.SPERM.AUG.CONTRAST = [1.0, 1.0]
    # (list[float]) saturation factor range (stain intensity); [1, 1] disables it.
    _C.SPERM.AUG.SATURATION = [1.0, 1.0]
    # (float) max hue shift in degrees (stain colour varies between labs); 0 disables it.
    _C.SPERM.AUG.HUE_DEGREES = 0.0

    # Evaluation, model selection and training hooks (sperm_d2.engine).
    # (str) metric that selects model_best.pth, e.g. "segm/AP50", "pixellib/mAP50", "bbox/AP".
    _C.SPERM.BEST_METRIC = "segm/AP50"
    # (str) "max" or "min": whether a larger BEST_METRIC is better.
    _C.SPERM.BEST_MODE = "max"
    # (int) compute the loss on the val split every this many iterations; 0 uses TEST.EVAL_PERIOD,
    # -1 disables it.
    _C.SPERM.VAL_LOSS_PERIOD = 0
    # (bool) also keep model_best_val_loss.pth, the checkpoint with the lowest validation loss.
    _C.SPERM.BEST_BY_VAL_LOSS = False
    # (int) stop after this many evaluations without improving BEST_METRIC; 0 never stops early.
    _C.SPERM.EARLY_STOP_PATIENCE = 0
    # (int) images per forward pass in a training run's evaluation rounds (validation loss and
    # COCO evaluation share one pass); only images that pad to the same input size share a pass, so
    # every number equals that of one image at a time. 1 = one at a time.
    _C.SPERM.EVAL_BATCH_SIZE = 4
    # (int) redraw the training plots every this many iterations; 0 draws them only at the end.
    _C.SPERM.PLOT_PERIOD = 0
    # (float) in [0, 1): keep a moving average of the weights with this decay per iteration
    # (sperm_d2.engine.ema); evaluation rounds, model_best*.pth and model_final.pth use it.
    # 0 disables it.
    _C.SPERM.EMA_DECAY = 0.0
    # (float) pixellib/mAP50 ignores detections scoring below this (PixelLib's Matterport model
    # dropped them at DETECTION_MIN_CONFIDENCE); 0 keeps all that ROI_HEADS.SCORE_THRESH_TEST keeps.
    _C.SPERM.PIXELLIB_SCORE_THRESH = 0.0

    # Inference (sperm_d2.inference).
    # (float) detections below this score are dropped by tools/infer.py unless it is overridden.
    _C.SPERM.CONFIDENCE_THRESHOLD = 0.5
    # (float) >= 0: weight each detection's score by its mask's confidence (the mean probability
    # of its foreground pixels) to this power (sperm_d2.mask_score); also in the training run's
    # evaluation rounds. 0 keeps the box classifier's score.
    _C.SPERM.MASK_SCORE_POWER = 0.0
    # (int) images per forward pass; 0 = auto: a stream's first images are predicted 1, 2, 4 and 8
    # per pass, timed (bounded by memory), and the fastest is kept for the process (no fixed rule
    # holds: it depends on model, input size, device and load; bench_infer.py (b) prints the table).
    _C.SPERM.INFER_BATCH_SIZE = 0
    # Large fields (sperm_d2.inference.tiling): an image that INPUT.MIN/MAX_SIZE_TEST would shrink
    # more than a SIZE x SIZE window is predicted in overlapping windows at the window's scale
    # (heads keep the size the model was trained on) and the windows' heads are merged.
    _C.SPERM.TILE = CN()
    # (int) window side in image pixels; 0 = never tile (every image is resized whole).
    _C.SPERM.TILE.SIZE = 0
    # (int) overlap of neighbouring windows in image pixels: heads up to this size lie whole in
    # some window (larger ones may be kept as a part).
    _C.SPERM.TILE.OVERLAP = 192
    # (str) CPU inference and evaluation precision (detector and head grader): "fp32", "bf16"
    # (autocast; outputs still fp32) or "auto" (bf16 where the CPU has it natively, e.g. AMX or
    # AVX512-BF16; else fp32). bf16 inference measured within 0.5 points of fp32 on the demo,
    # HuSHeM and SMIDS test splits (sperm_d2.precision.BF16_PARITY_SHOWN). A GPU runs fp32.
    # Training precision is SOLVER.AMP.ENABLED (on the CPU: bf16 autocast where the CPU has
    # native bf16, else fp32); configs/sperm_grader_cpu.yaml turns it on.
    _C.SPERM.INFER_PRECISION = "auto"
    # (str) the detector's test-time augmentation in inference and evaluate.py (not in training's
    # evaluations): "none", or flipped views of each image ("hflip", "rot180", "flips" = all
    # four), their boxes merged and their mask probabilities averaged
    # (sperm_d2.inference.flip_tta). Each view costs about two plain passes: off by default.
    _C.SPERM.INFER_TTA = "none"
    # (float) micrometres per pixel for morphometrics in µm; 0 = unknown (pixels only).
    _C.SPERM.UM_PER_PX = 0.0

    # Second stage: the head grader (sperm_d2.grading), a small CNN on a canonical crop of each
    # head that gives p_bad. Its own YAML sets MODEL.META_ARCHITECTURE "SpermHeadGrader".
    _C.SPERM.GRADER = CN()
    # (str) a detector run's grader: the grader's run folder, used by infer.py/evaluate.py when
    # --grader is not given; "" = grade with the detector's own class.
    _C.SPERM.GRADER.RUN = ""
    # (int) side of the square canonical crop, in pixels.
    _C.SPERM.GRADER.CROP_SIZE = 64
    # (float) the head's long axis spans this fraction of the crop side.
    _C.SPERM.GRADER.HEAD_FRACTION = 0.6
    # (float) at most this upscaling when cutting a crop (a tiny head stays small, not blurred up).
    _C.SPERM.GRADER.MAX_SCALE = 8.0
    # (float) > 0: cut every head at this one scale (crop px per image px) instead of scaling it
    # to HEAD_FRACTION, so the model sees head size (it then depends on the magnification).
    _C.SPERM.GRADER.FIXED_SCALE = 0.0
    # (str) which crop the grader sees: "aligned" (rotated so the head's long axis is horizontal,
    # its direction fixed by the mask's skew) or "unaligned" (the head as it lies in the image);
    # graders of both views can be averaged (infer.py/evaluate.py --grader A B).
    _C.SPERM.GRADER.VIEW = "aligned"
    # (str) how the model sees the head's mask: "channel" (a 4th input channel), "suppress"
    # (background pixels replaced by grey) or "none" (colour only).
    _C.SPERM.GRADER.MASK_MODE = "channel"
    # (str) the grader's feature extractor: "compact" (a small ResNet-style CNN from scratch,
    # CHANNELS below), a torchvision "resnet18" / "resnet34" / "resnet50", which can start from
    # ImageNet weights given as MODEL.WEIGHTS (configs/sperm_grader_resnet18_imagenet.yaml), or
    # "part_unet", the head-part segmenter's U-Net encoder, which can start from a head-part run's
    # checkpoint given as MODEL.WEIGHTS (configs/sperm_grader_part_unet_cpu.yaml).
    _C.SPERM.GRADER.BACKBONE = "compact"
    # (list[int]) output channels of the "compact" CNN's stages, after a stride-2 stem (each stage
    # halves the resolution but the first); with "part_unet", the U-Net encoder's levels (the
    # head-part run's SPERM.PARTS.CHANNELS).
    _C.SPERM.GRADER.CHANNELS = [24, 48, 96, 192]
    # (float) dropout before the classifier.
    _C.SPERM.GRADER.DROPOUT = 0.2
    # (str) class imbalance: "sampler" (class-balanced batches), "loss" (inverse-frequency class
    # weights in the loss) or "none".
    _C.SPERM.GRADER.BALANCE = "sampler"
    # (float) label smoothing of the cross-entropy targets (0 = off).
    _C.SPERM.GRADER.LABEL_SMOOTHING = 0.0
    # (float) > 0: the generalized cross-entropy loss (1 - p^q) / q with this q (0.7 in its paper;
    # q -> 0 is the cross-entropy, q = 1 the MAE), robust to mislabelled heads; 0 = cross-entropy.
    _C.SPERM.GRADER.GCE_Q = 0.0
    # (float) mixup Beta(alpha, alpha) on training batches (0 = off).
    _C.SPERM.GRADER.MIXUP_ALPHA = 0.0
    # (str) test-time augmentation, the mean probability over views of the aligned crop (whose
    # head direction is ambiguous): "none", "rot180" (the crop and its 180-degree rotation) or
    # "flips" (its 4 flips). On val rot180 matched flips at half the cost (benchmarks/RESULTS.md).
    _C.SPERM.GRADER.TTA = "rot180"
    # (int) crops per forward pass in evaluation and inference.
    _C.SPERM.GRADER.TEST_BATCH_SIZE = 256
    # (int) members of a grader ensemble (MODEL.META_ARCHITECTURE "SpermGraderEnsemble"): that
    # many graders trained together from their own random starts, probabilities averaged.
    _C.SPERM.GRADER.ENSEMBLE_SIZE = 3
    # Online augmentation of the cached training crops (done on whole batches, in torch).
    _C.SPERM.GRADER.AUG = CN()
    # (bool) random horizontal and vertical flips (the aligned head may point either way).
    _C.SPERM.GRADER.AUG.FLIP = True
    # (float) max random rotation in degrees on top of the alignment.
    _C.SPERM.GRADER.AUG.ROTATE_DEGREES = 10.0
    # (list[float]) random scale range.
    _C.SPERM.GRADER.AUG.SCALE = [0.9, 1.1]
    # (float) max random shift as a fraction of the crop side.
    _C.SPERM.GRADER.AUG.SHIFT = 0.05
    # (list[float]) brightness factor range; [1, 1] disables it.
    _C.SPERM.GRADER.AUG.BRIGHTNESS = [0.8, 1.2]
    # (list[float]) contrast factor range; [1, 1] disables it.
    _C.SPERM.GRADER.AUG.CONTRAST = [0.8, 1.2]
    # (list[float]) saturation factor range (stain intensity); [1, 1] disables it.
    _C.SPERM.GRADER.AUG.SATURATION = [0.7, 1.3]
    # (float) max hue shift in degrees (stain colour differs between labs); 0 disables it.
    _C.SPERM.GRADER.AUG.HUE_DEGREES = 10.0

    # Parts (sperm_d2.parts): a semantic part segmenter over whole fields (acrosome, nucleus,
    # vacuole, midpiece, tail). Its own YAML sets MODEL.META_ARCHITECTURE "SpermPartSegmenter".
    _C.SPERM.PARTS = CN()
    # (str) a detector run's part segmenter: the part run folder, used by infer.py when --parts
    # is not given; "" = no parts.
    _C.SPERM.PARTS.RUN = ""
    # (list[int]) channels of the U-Net's levels, the first at the input's resolution times
    # SPERM.PARTS.SCALE, each next one at half the previous resolution.
    _C.SPERM.PARTS.CHANNELS = [16, 32, 64, 128, 256]
    # (list[float]) cross-entropy weight per class, background first then SPERM.CLASSES; [] = 1.
    _C.SPERM.PARTS.CLASS_WEIGHTS = []
    # (float) weight of a soft Dice term added to the cross-entropy (loss_parts_dice): 1 - the
    # mean over the part classes (background left out) of each class's Dice over the whole
    # batch. Dice scores a class by its overlap whatever its pixel count, so thin and small parts
    # (tail, midpiece, vacuole) count as much as large ones (nnU-Net's CE + Dice); 0 = off.
    _C.SPERM.PARTS.DICE_WEIGHT = 0.0
    # (list[float]) added to the segmenter's logits before the softmax in inference and
    # evaluation, background first then SPERM.CLASSES; [] = none. Not set by hand: chosen on
    # val by tools/calibrate_parts.py, which writes them into the run's config.yaml.
    _C.SPERM.PARTS.LOGIT_BIAS = []
    # (str) test-time augmentation, the segmenter's logits averaged over flipped views of its
    # input (each flipped back; sperm_d2.flip_views): "none", "hflip" (left-right), "rot180"
    # (the input turned half round) or "flips" (all 4). Training draws these flips, so the
    # views are inputs the model knows; each costs one more pass. Calibrate after changing it.
    _C.SPERM.PARTS.TTA = "none"
    # (int) side of the square training windows cut at random from the fields (native scale).
    _C.SPERM.PARTS.WINDOW = 512
    # (float) in (0, 1]: the U-Net sees its input resized by this factor and its logits are
    # resized back to the input's size, so losses, evaluation and every output stay at native
    # resolution. 0.5 costs about a quarter of the compute per pixel and sees twice the context
    # per window (the field's midpiece and tail are 6-10 px wide at the Sperm Parsing scale).
    _C.SPERM.PARTS.SCALE = 1.0
    # (float) probability that a training window is centred on an annotated part (else anywhere
    # in the field): most of a field is background.
    _C.SPERM.PARTS.FOCUS_PROB = 0.7
    # (str) what the segmenter sees: "field" = windows of whole fields, every pixel gets a part
    # (midpiece and tail included); "head" = each head's canonical crop (sperm_d2.grading.crop,
    # rotated to its long axis) with the head's mask as a 4th channel, its mask's pixels split
    # into acrosome, nucleus and vacuole (sperm_d2.parts.head_crop, PartModel.head_parts).
    _C.SPERM.PARTS.INPUT = "field"
    # (int) "head" input: side of the canonical crop in px.
    _C.SPERM.PARTS.CROP_SIZE = 96
    # (float) "head" input: share of the crop's side the head's long axis spans.
    _C.SPERM.PARTS.HEAD_FRACTION = 0.7
    # (int) "head" input, training: the head mask of the 4th channel is grown or shrunk by up to
    # this many px at random (the detector's outline differs from the annotator's by a px or two).
    _C.SPERM.PARTS.MASK_JITTER = 2
    # (float) "head" input, training: random extra rotation of the crop, in degrees either way.
    _C.SPERM.PARTS.ROTATE_DEGREES = 10.0
    # (str) "head" input: a detector run folder whose detections that are no annotated head
    # (round cells, debris) join training and validation as background-only crops, so that the
    # segmenter learns to say "no sperm head here" (sperm_d2.parts.negatives); "" = none.
    _C.SPERM.PARTS.NEGATIVES_RUN = ""
