"""Training configurations: three named presets and the resolved config a job records.

A preset is a starting point; any command-line flag overrides one field. The resolved
config goes into the job dir's config.json so a job can be understood (and resumed)
from the dir alone.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from trainer.contract import (CLOCKS, DEFAULT_IMAGE_SIZE, DEFAULT_LOSS, DEFAULT_PRESET, IMAGE_SIZES,
                              LOSS_GAN, LOSS_SEED, LOSS_VAEGAN, LOSSES, MBSTD_MIXES,
                              PRESET_IMAGE_SIZES)


@dataclass
class Config:
    """Everything a run depends on. Defaults are the seed's sizes (the `seed` preset)."""

    preset: str = DEFAULT_PRESET
    image_size: int = DEFAULT_IMAGE_SIZE
    embedding_size: int = 100
    width: int = 64                 # filters of the first conv; doubles per level (64-128-256-512)
    d_width: int = 0                # the discriminator's first-conv filters; 0 = same as width
    d_depth: int = 0                # extra 3x3 stride-1 convs after each of D's stride-2 convs
    g_depth: int = 0                # a 3x3 stride-1 conv at each of the decoder's K coarsest
                                    # levels (4x4, 8x8, ...): more layers where shapes are drawn
    g_mapping: int = 0              # z + an MLP of z of this many layers into G's first layer
                                    # (after StyleGAN's mapping network); 0: none, DCGAN's
    g_mapping_lr: float = 1.0       # how fast the mapping learns against an equalised layer at
                                    # G's rate (StyleGAN's lrmul is 0.01)
    d_attn: int = 0                 # a self-attention block in D where its feature map is this
                                    # size (SAGAN; e.g. 16); 0: none
    g_attn: int = 0                 # the same block in the decoder where its map is this size
    d_dropout: float = 0.0          # dropout after D's levels from the feature level on (0: none)
    d_scales: int = 1               # D also judges the image average-pooled by 2, 4, ... with a
                                    # stack and logit of its own each (pix2pixHD); 1: one scale
    batch_size: int = 64
    max_steps: int = 20000
    seed: int = 0
    loss: str = DEFAULT_LOSS        # contract.LOSS_SUMMARIES says what each one is
    latent_weight: float = 1.0      # "gan": the encoder recovers z from decodes of prior samples
    recon_fraction: float = 1.0     # "gan": the share of each batch the encoder reconstructs
    encoder_every: int = 1          # "gan": the encoder trains on every Nth step only
    g_latent: float = 0.0           # "gan": the decoder too learns from the latent term (weight),
                                    # on the encoder's steps: decodes the encoder maps back to their
                                    # z (VEEGAN's reconstructor loss); 0: the encoder alone
    lr_e: float = 2e-4
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    kl_weight: float = 1.0          # weight of the per-sample KL against the per-sample recon sum
    feature_weight: float = 0.0     # learned-similarity term (D features); off: no gain measured
    pixel_weight: float = 1.0       # pixel L2 term of the reconstruction
    gamma: float | None = None      # reconstruction's weight in the decoder's loss; None: 20 for
                                    # "vaegan", 0 for "gan" (its decoder learns from the GAN alone)
    spectral_norm: bool = False     # spectral norm in D's convolutions (--spectral-norm)
    d_batch_norm: bool = True       # batch norm in D after its first layer (DCGAN's D); measured:
                                    # SWD 24.0 vs 46.0 with spectral norm at 2.5 min (docs/trainer.md)
    ema_decay: float = 0.999
    ema_probes: str = ""            # more EMA decays to evaluate alongside (benchmarks): "0.9999,..."
    eval_every: int = 1000
    eval_minutes: float = 0.0       # evaluate every N minutes of training instead (0: by steps)
    max_minutes: float = 0.0        # stop after N minutes of training (0: by steps only)
    clock: str = "wall"             # "wall", or "cpu": process CPU time / cores (benchmarks)
    eval_images: int = 2000         # per set: generated vs real, and the real-vs-real floor
    eval_draws: int = 1             # SWD draws per evaluation, scored as their mean (benchmarks:
                                    # one draw moves by 0.8-1.6, as much as two recipes differ)
    patience: int = 4               # evaluations without a new best SWD before "stalled";
                                    # resolve() raises it to a third of the budget's evaluations
    stop_when_stalled: bool = False # end the run (and export the best) once stalled
    sample_every: int = 500
    sample_grid: int = 8            # samples/ grids are sample_grid x sample_grid images
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    shuffle_buffer: int = 2048
    cache_limit_mb: int = 2048      # decoded images are cached in memory below this size
    swd_patches: int = 128          # ProGAN: 128 patches of 7x7 per image per level
    swd_projections: int = 512
    augment: str = ""               # DiffAugment policy for D's inputs: e.g. "color,translation,cutout"
    augment_target: float = 0.0     # > 0: augment each image with a probability p that ADA's rule
                                    # adapts (E[sign D(real)] held at this); 0: always (p = 1)
    augment_late: str = ""          # with augment_target: augmentations ADA adds once p reaches 1;
                                    # p may rise to 2 and each image also gets these with p - 1
    label_smoothing: float = 0.0    # one-sided: D's target for real images is 1 - this
    r1: float = 0.0                 # R1 penalty weight (Mescheder et al. 2018): gamma/2 x D's
                                    # squared input gradient at the (augmented) real images
    r1_every: int = 1               # with r1: the penalty on every Nth step only, at N times the
                                    # weight (StyleGAN2's lazy regularisation: its cost / N)
    r1_last: float = 1.0            # with r1: the penalty over the last F of the budget (minutes,
                                    # else steps) only; 1: from the first step
    apa: float = 0.0                # adaptive pseudo augmentation (Jiang et al. 2021): the target of
                                    # E[sign D(real)] above which more of D's real images are swapped
                                    # for the generator's (labelled real); 0: off
    apa_late: bool = False          # with apa and augment_target: APA starts only once ADA's p
                                    # has reached 1 (a second stage, as augment_late), and falls
                                    # back while p is below 1; no extra decoder pass before
    lecam: float = 0.0              # LeCam weight (Tseng et al. 2021): D's logits held near the
                                    # moving averages of the other side's; 0: off
    d_recon: float = 0.0            # FastGAN's self-supervised D: weight of its decoder's pixel
                                    # error redrawing real images from D's last features; 0: off
    mbstd: int = 0                  # ProGAN's minibatch standard deviation: D's last block also
                                    # sees how its features vary across groups of N images; 0: off
    mbstd_mix: str = "conv"         # how D mixes that channel in: "conv" (ProGAN's 3x3 conv before
                                    # the logit) or "dense" (straight into the logit's dense layer)
    mbstd_start: int = 0            # with mbstd: that channel is held at 0 until this step, then
                                    # faded in over a quarter as many steps; 0: there from step 0
    lr_decay: float = 0.0           # the last F of the budget (minutes, else steps): every learning
                                    # rate falls linearly to 0 by the end; 0: constant
    batch_double: float = 0.0       # the last F of the budget (minutes, else steps) trains with
                                    # twice batch_size (a new input pipeline and trace); 0: off
    batch_double_images: int = 0    # twice batch_size also once this many images are seen at
                                    # batch_size, if that comes before batch_double; 0: off
    bcr: float = 0.0                # balanced consistency regularisation (Zhao et al. 2021): weight
                                    # of D's squared logit change between each image and its
                                    # augmented copy, real and fake alike; 0: off
    g_topk: float = 1.0             # top-k training (Sinha et al. 2020): the generator's loss counts
                                    # only this fraction of the prior samples, those D rates most
                                    # real; 1: all of them
    g_topk_last: float = 1.0        # with g_topk < 1: top-k over the last F of the budget (minutes,
                                    # else steps) only; 1: from the first step, as the paper does
    refine_steps: int = 100         # image -> embedding in the export: Adam steps on the decode's
                                    # pixel error after the encoder (trainer/refine.py); 0: its mean

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


AUGMENTATIONS = ("color", "translation", "cutout", "scale", "rotate")


def augment_policy(text: str) -> tuple[str, ...]:
    """'color, translation' -> ('color', 'translation'); '' -> () (off). Unknown names raise.

    Here rather than in trainer/augment.py so a wrong flag fails before TensorFlow loads.
    """
    names = tuple(p.strip() for p in (text or "").split(",") if p.strip())
    unknown = [p for p in names if p not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; use a comma-separated "
                         f"list of {', '.join(AUGMENTATIONS)} (or \"\" to turn it off)")
    return names


def ema_probes(text: str) -> tuple[float, ...]:
    """'0.9995, 0.9999' -> (0.9995, 0.9999): the --ema-probes decays; each in [0, 1)."""
    try:
        decays = tuple(float(p) for p in (text or "").split(",") if p.strip())
    except ValueError:
        raise ValueError(f"--ema-probes {text!r} is not a list of numbers; use decays such as "
                         f"0.9995,0.9999") from None
    bad = [d for d in decays if not 0.0 <= d < 1.0]
    if bad or len(set(decays)) < len(decays):
        raise ValueError(f"--ema-probes {text!r}: each decay must be 0 up to below 1, each once")
    return decays


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on two CPU cores: for tests and smoke runs. 16x16, narrow, a dozen steps.
    "tiny": dict(image_size=PRESET_IMAGE_SIZES["tiny"], embedding_size=8, width=8, batch_size=8, max_steps=12,
                 eval_every=12, eval_images=16, sample_every=6, sample_grid=4,
                 checkpoint_every=6, keep_checkpoints=2, log_every=2, ema_decay=0.9,
                 shuffle_buffer=64, swd_patches=16, swd_projections=64),
    # A CPU half-hour: 32x32 and narrow, up to 30 minutes of training, evaluated every 2.5;
    # it ends early, exporting its best evaluation, once SWD has not improved for 4 of them
    # (default_patience: a third of the budget's evaluations, so 8 with --max-minutes 60).
    # DiffAugment (color, translation) and a slower EMA: on the emoji set SWD kept falling to
    # 20 CPU-minutes (26.7, 20.1, 18.2, 17.2 at 5-20) where without them it stalled at ~20
    # after 5 (docs/trainer.md, "Sample quality against time"). ADA's adaptive probability
    # on top (target 0.6): SWD at 30 CPU-minutes 16.6 on both seeds against 16.7 and 21.1
    # without, still falling at 30 on both ("R1, adaptive augmentation, cut-out").
    # The encoder on every 4th step (the GAN on every step): 46% more steps, SWD 19.1 / 20.3
    # at 10 CPU-minutes against 22.0 / 23.7, 17.4 / 17.5 at 30 against 16.6 / 16.6
    # ("The encoder on every fourth step").
    # A second discriminator head on the image pooled to 16x16 (--d-scales 2), where the
    # per-level SWD put most of the remaining distance: 16.7 / 16.7 at 10 CPU-minutes against
    # 18.9 / 21.4, 15.1 / 15.6 at 30 against 17.7 / 16.9, for 14% more of D's FLOPs
    # ("A second discriminator scale").
    # Twice the batch over the second half (--batch-double 0.5; 64 from 15 minutes, the rates
    # unchanged): 14.3 / 15.7, 13.7 / 15.1, 13.9 / 15.0 at 20 / 25 / 30 CPU-minutes against
    # 15.0 / 15.1, 14.7 / 15.6, 15.1 / 15.6, so falling at 10, 20 and 30 on both seeds; over a
    # 60-minute budget calmer evaluations from 30 on ("Twice the batch over the end").
    # And from 750,000 images (23,438 steps of 32) when that comes first: a fast CPU (Zen 4)
    # reached batch 32's plateau by 20 minutes, where a 60-minute budget still waited for its
    # half; its own 30-minute budget, doubling at 15 (23,700 steps), scored 16.6 at 20 and
    # 15.5 at 30 against 18.1 and 18.0 ("`quick`'s own 30 minutes on a Zen 4 CPU"); from 30
    # to 60 level (15.8 at 60), the plateau the later switch reached at 40 (15.9).
    "quick": dict(image_size=PRESET_IMAGE_SIZES["quick"], embedding_size=64, width=32, batch_size=32,
                  max_steps=1_000_000, max_minutes=30.0, eval_minutes=2.5, stop_when_stalled=True,
                  sample_every=250, checkpoint_every=500, log_every=25, ema_decay=0.999,
                  augment="color,translation", augment_target=0.6, encoder_every=4, d_scales=2,
                  batch_double=0.5, batch_double_images=750_000),
    # The seed's sizes: 64x64, 100-d embedding, 64-128-256-512 stacks.
    "seed": dict(),
}


def resolve(preset: str, overrides: dict[str, Any]) -> Config:
    """Preset values, then every override that is not None."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset], preset=preset)
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = Config(**values)
    if cfg.image_size not in IMAGE_SIZES:
        sizes = ", ".join(map(str, IMAGE_SIZES[:-1])) + f" or {IMAGE_SIZES[-1]}"
        raise ValueError(f"image size {cfg.image_size} is not supported; use {sizes}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; use {', '.join(LOSSES)}")
    if cfg.gamma is None:
        cfg.gamma = 20.0 if cfg.loss == LOSS_VAEGAN else 0.0
    if cfg.clock not in CLOCKS:
        raise ValueError(f"unknown clock {cfg.clock!r}; use {' or '.join(CLOCKS)}")
    if not 0.0 < cfg.recon_fraction <= 1.0:
        raise ValueError(f"--recon-fraction {cfg.recon_fraction} is out of range; use more than 0 "
                         f"up to 1 (the whole batch)")
    if cfg.g_latent < 0 or (cfg.g_latent and cfg.loss != LOSS_GAN):
        raise ValueError(f"--g-latent {cfg.g_latent} needs a weight of 0 or more and --loss {LOSS_GAN} "
                         f"(the loss with the latent term)")
    if cfg.encoder_every < 1:
        raise ValueError(f"--encoder-every {cfg.encoder_every} must be at least 1 (every step)")
    if overrides.get("encoder_every") is None and (cfg.loss != LOSS_GAN or cfg.gamma):
        cfg.encoder_every = 1     # a preset's value yields to a loss whose decoder needs the encoder
    if cfg.encoder_every > 1 and cfg.loss != LOSS_GAN:
        raise ValueError(f"--encoder-every {cfg.encoder_every} needs --loss {LOSS_GAN}: with "
                         f"--loss {cfg.loss} the decoder learns from the reconstruction too")
    if cfg.encoder_every > 1 and cfg.gamma:
        raise ValueError(f"--encoder-every {cfg.encoder_every} needs --gamma 0: the decoder's "
                         f"reconstruction term would only count on the encoder's steps")
    for name in ("max_minutes", "eval_minutes"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 (off) or more")
    cfg.augment = ",".join(augment_policy(cfg.augment))
    for name in ("max_steps", "batch_size", "embedding_size", "width", "eval_every", "eval_images",
                 "eval_draws", "sample_every", "sample_grid", "checkpoint_every", "keep_checkpoints",
                 "log_every", "patience"):
        if getattr(cfg, name) < 1:      # every/ks of 0 would divide by zero mid-run
            raise ValueError(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be at least 1")
    if overrides.get("patience") is None and "patience" not in PRESETS[preset]:
        cfg.patience = default_patience(cfg)
    for name in ("d_width", "d_depth"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be 0 or more")
    if not 0 <= cfg.g_depth <= levels(cfg.image_size):
        raise ValueError(f"--g-depth {cfg.g_depth} is out of range at image size {cfg.image_size}: use 0 "
                         f"(off) up to {levels(cfg.image_size)} (every level below the output)")
    if cfg.g_mapping not in (0, *range(2, 9)):
        raise ValueError(f"--g-mapping {cfg.g_mapping} is out of range: use 0 (off) or 2 up to 8 "
                         f"(StyleGAN's depth; one layer would be linear, z plus a matrix times z)")
    if not 0.0 < cfg.g_mapping_lr <= 1.0:
        raise ValueError(f"--g-mapping-lr {cfg.g_mapping_lr} is out of range: use above 0 up to 1 "
                         f"(the mapping's learning rate as a share of G's; StyleGAN's is 0.01)")
    inner = [cfg.image_size >> i for i in range(1, levels(cfg.image_size) + 1)]
    for flag, size, net in (("--d-attn", cfg.d_attn, "D's"), ("--g-attn", cfg.g_attn, "the decoder's")):
        if size and size not in inner:      # both nets have maps of these sizes, halving per level
            raise ValueError(f"{flag} {size} is not one of {net} feature-map sizes at image size "
                             f"{cfg.image_size}: use 0 (off) or one of {', '.join(map(str, inner))}")
    if not 0.0 <= cfg.d_dropout < 1.0:
        raise ValueError(f"--d-dropout {cfg.d_dropout} is out of range; use 0 (off) up to below 1 "
                         f"(the share of D's activations dropped, e.g. 0.3)")
    if cfg.d_scales < 1 or cfg.image_size >> (cfg.d_scales - 1) < 8:    # the smallest scale
        most = max(1, cfg.image_size.bit_length() - 3)
        raise ValueError(f"--d-scales {cfg.d_scales} is out of range at image size {cfg.image_size}: "
                         f"use 1 (the image alone) up to {most} (the smallest scale 8x8)")
    for name in ("lr_e", "lr_g", "lr_d"):
        if not 0.0 <= getattr(cfg, name) < float("inf"):       # 0 freezes that network
            raise ValueError(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be 0 or more")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ValueError(f"--ema-decay {cfg.ema_decay} is out of range; use 0 up to below 1 (0.999 is usual)")
    cfg.ema_probes = ",".join(map(str, ema_probes(cfg.ema_probes)))
    if not 0.0 <= cfg.label_smoothing < 0.5:
        raise ValueError(f"label smoothing {cfg.label_smoothing} is out of range; use 0 (off) "
                         f"up to below 0.5 (0.1 is usual)")
    if not 0.0 <= cfg.augment_target < 1.0:
        raise ValueError(f"--augment-target {cfg.augment_target} is out of range; use 0 (always "
                         f"augment) or more, below 1 (0.6 is ADA's)")
    cfg.augment_late = ",".join(augment_policy(cfg.augment_late))
    if cfg.augment_late and not (cfg.augment_target and cfg.augment):
        raise ValueError(f"--augment-late {cfg.augment_late} needs --augment and --augment-target: "
                         f"it adds to the adaptive augmentation once every image is augmented")
    if not 0.0 <= cfg.apa < 1.0:
        raise ValueError(f"--apa {cfg.apa} is out of range; use 0 (off) or a target of E[sign D(real)] "
                         f"below 1 (0.6 is the paper's, as ADA's)")
    if cfg.apa_late and not (cfg.apa and cfg.augment_target and cfg.augment):
        raise ValueError("--apa-late needs --apa, --augment and --augment-target: it starts the "
                         "pseudo augmentation once the adaptive augmentation's p reaches 1")
    if cfg.apa and cfg.loss != LOSS_GAN:
        raise ValueError(f"--apa needs --loss {LOSS_GAN}: the other formulations give D reconstructions "
                         f"beside the real images, which it does not swap")
    if not 0.0 <= cfg.lecam < float("inf"):
        raise ValueError(f"--lecam {cfg.lecam} is out of range; use 0 (off) or more (the paper "
                         f"used 0.3 with a hinge loss; docs/trainer.md has 0.01 measured here)")
    if not 0.0 <= cfg.d_recon < float("inf"):
        raise ValueError(f"--d-recon {cfg.d_recon} is out of range; use 0 (off) or more "
                         f"(FastGAN's weight is 1)")
    for name in ("lecam", "d_recon"):
        if getattr(cfg, name) and cfg.loss == LOSS_SEED:
            raise ValueError(f"--{name.replace('_', '-')} needs --loss {LOSS_GAN} or {LOSS_VAEGAN}: "
                             f"the seed's formulation is kept as it was, for comparison")
    if cfg.mbstd == 1 or cfg.mbstd < 0:
        raise ValueError(f"--mbstd {cfg.mbstd}: use 0 (off) or a group of 2 or more images "
                         f"(ProGAN's is 4)")
    if cfg.mbstd_mix not in MBSTD_MIXES:
        raise ValueError(f"--mbstd-mix {cfg.mbstd_mix!r}: use one of {', '.join(MBSTD_MIXES)}")
    if cfg.mbstd_mix != "conv" and not cfg.mbstd:
        raise ValueError(f"--mbstd-mix {cfg.mbstd_mix} needs --mbstd N (4 is ProGAN's): it says "
                         f"how D mixes in that channel")
    if cfg.mbstd_start < 0:
        raise ValueError(f"--mbstd-start {cfg.mbstd_start} must be 0 (the channel from the first "
                         f"step) or a later step")
    if cfg.mbstd_start and not cfg.mbstd:
        raise ValueError(f"--mbstd-start {cfg.mbstd_start} needs --mbstd N (4 is ProGAN's): it says "
                         f"when D starts to see that channel")
    if not 0.0 <= cfg.lr_decay <= 1.0:
        raise ValueError(f"--lr-decay {cfg.lr_decay} is out of range; use 0 (constant) up to 1 "
                         f"(decay over the whole budget)")
    if not 0.0 <= cfg.batch_double <= 1.0:
        raise ValueError(f"--batch-double {cfg.batch_double} is out of range; use 0 (one batch size "
                         f"throughout) up to 1 (twice the batch size from the first step)")
    if cfg.batch_double_images < 0:
        raise ValueError(f"--batch-double-images {cfg.batch_double_images} is out of range; use 0 "
                         f"(off) or the count of images after which the batch doubles")
    if not 0.0 <= cfg.bcr < float("inf"):
        raise ValueError(f"--bcr {cfg.bcr} is out of range; use 0 (off) or more (the paper's is 10)")
    if cfg.bcr and not (cfg.augment and cfg.loss == LOSS_GAN):
        raise ValueError(f"--bcr {cfg.bcr} needs --augment POLICY and --loss {LOSS_GAN}: it holds D's "
                         f"logits alike on each image and its augmented copy")
    if not 0.0 < cfg.g_topk <= 1.0:
        raise ValueError(f"--g-topk {cfg.g_topk} is out of range; use a fraction above 0 up to 1 "
                         f"(every prior sample; the paper ends at 0.5 to 0.75)")
    if cfg.g_topk < 1.0 and cfg.loss != LOSS_GAN:
        raise ValueError(f"--g-topk {cfg.g_topk} needs --loss {LOSS_GAN}: it picks among the "
                         f"prior samples that loss alone trains the generator on")
    if not 0.0 < cfg.g_topk_last <= 1.0:
        raise ValueError(f"--g-topk-last {cfg.g_topk_last} is out of range; use a share of the budget "
                         f"above 0 up to 1 (top-k from the first step)")
    if cfg.refine_steps < 0:
        raise ValueError(f"--refine-steps {cfg.refine_steps} must be 0 (the encoder's mean) or more")
    if not 0.0 <= cfg.r1 < float("inf"):
        raise ValueError(f"--r1 {cfg.r1} is out of range; use 0 (off) or more (0.1 to 10 is usual)")
    if cfg.r1_every < 1:
        raise ValueError(f"--r1-every {cfg.r1_every} must be at least 1 (the penalty on every step)")
    if cfg.r1_every > 1 and not cfg.r1:
        raise ValueError(f"--r1-every {cfg.r1_every} needs --r1 GAMMA above 0: it spaces out that "
                         f"penalty, which is off")
    if not 0.0 < cfg.r1_last <= 1.0:
        raise ValueError(f"--r1-last {cfg.r1_last} is out of range; use a share of the budget "
                         f"above 0 up to 1 (the penalty from the first step)")
    if cfg.r1_last < 1.0 and not cfg.r1:
        raise ValueError(f"--r1-last {cfg.r1_last} needs --r1 GAMMA above 0: it schedules that "
                         f"penalty, which is off")
    return cfg


MIN_PATIENCE = 4


def default_patience(cfg: Config) -> int:
    """A third of the evaluations the budget holds, and at least MIN_PATIENCE.

    A fixed count is a fixed share of time only for one budget: `quick`'s 4 evaluations of
    2.5 minutes are a third of its 30, but with --max-minutes 60 they would end a run that
    had gone 10 minutes without a best, and one measured seed went 15 minutes between
    bests (25 -> 40) and then fell to its lowest SWD at 60 (docs/trainer.md, "Seed 1 to
    60 minutes"). Only the wait changes: the export is the best evaluation either way.
    """
    if cfg.max_minutes and cfg.eval_minutes:
        evaluations = cfg.max_minutes / cfg.eval_minutes
    elif not cfg.max_minutes and not cfg.eval_minutes:
        evaluations = cfg.max_steps / cfg.eval_every
    else:          # one counted in minutes, the other in steps: how many fit is unknown
        evaluations = 0.0
    return max(MIN_PATIENCE, math.ceil(evaluations / 3 - 1e-9))


def levels(image_size: int) -> int:
    """Stride-2 stages from the image down to 4x4 (64 -> 4 stages, as in the seed)."""
    return max(1, image_size.bit_length() - 1 - 2)


__all__ = ["Config", "PRESETS", "AUGMENTATIONS", "augment_policy", "default_patience", "ema_probes",
           "resolve", "levels"]
