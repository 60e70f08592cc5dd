"""The trainer's parts in-process: crop rule, input pipeline, losses, SWD, cluster spec, presets."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from trainer import cluster, data, losses, metrics, presets  # noqa: E402 - after importorskip
from trainer.errors import InputError  # noqa: E402 - after importorskip
from trainer.manifest import max_image_size, read_manifest  # noqa: E402 - after importorskip


def test_crop_box_is_three_quarters_of_the_short_side() -> None:
    assert int(data.crop_box(tf.constant(86), tf.constant(120))) == 64
    assert int(data.crop_box(tf.constant(43), tf.constant(43))) == 32
    assert int(data.crop_box(tf.constant(100), tf.constant(7))) == 5


def test_centre_crop_takes_the_middle_square() -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    img[5:35, 15:45] = 200                        # exactly the 30x30 centre box
    out = data.center_crop_resize(tf.constant(img), 30).numpy()
    assert out.shape == (30, 30, 3) and np.all(np.abs(out - 200) < 1e-3)


def test_train_pipeline_is_repeatable_and_in_range(demo_dataset: Path) -> None:
    manifest = read_manifest(str(demo_dataset))
    assert max_image_size(manifest) == 32

    def first(seed: int) -> np.ndarray:
        ds = data.train_dataset(str(demo_dataset), manifest, 16, 8, seed, 64, 64)
        return next(iter(ds)).numpy()

    a, b, c = first(1), first(1), first(2)
    assert a.shape == (8, 16, 16, 3) and a.dtype == np.float32
    assert a.min() >= -1.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)            # --seed makes the batches repeatable
    assert not np.array_equal(a, c)


def test_centre_mode_dataset_crops_once(demo_dataset: Path) -> None:
    manifest = json.loads((demo_dataset / "manifest.json").read_text())
    manifest["options"]["crop"] = "center"
    ds = data.train_dataset(str(demo_dataset), manifest, 32, 4, 0, 8, 64)
    assert next(iter(ds)).shape == (4, 32, 32, 3)


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(str(tmp_path / "nope"))
    (tmp_path / "manifest.json").write_text(json.dumps({"counts": {"train": 3},
                                                        "shards": {"train": ["t.tfrecord"]}}))
    with pytest.raises(InputError, match="missing shard t.tfrecord"):
        read_manifest(str(tmp_path))


def test_kl_is_zero_at_the_prior_and_finite_for_tiny_variances() -> None:
    zero = tf.zeros([4, 10])
    assert float(losses.kl_divergence(zero, zero)) == pytest.approx(0.0)
    mean, logvar = tf.ones([2, 3]), tf.fill([2, 3], -30.0)
    expected = 0.5 * 3 * (math.exp(-30) + 1 - 1 + 30)
    assert float(losses.kl_divergence(mean, logvar)) == pytest.approx(expected, rel=1e-5)
    assert float(losses.seed_kl(mean, logvar)) == pytest.approx(2 * expected, rel=1e-5)


def test_gan_losses_from_logits_do_not_saturate() -> None:
    very_fake = tf.constant([[-50.0]])
    g = losses.g_loss([very_fake])
    assert float(g) == pytest.approx(50.0, rel=1e-3)       # a gradient remains
    assert float(losses.d_loss(tf.constant([[50.0]]), [very_fake])) < 1e-6


def test_swd_tells_distributions_apart() -> None:
    """Random patches per set (as in ProGAN), so two samples of one distribution are close,
    not identical; another distribution is far."""
    rng = np.random.default_rng(0)

    def smooth(n: int) -> np.ndarray:
        low = rng.normal(0, 0.5, (n, 4, 4, 3)).astype(np.float32)
        return np.clip(tf.image.resize(low, [32, 32]).numpy(), -1, 1)

    a, b = smooth(32), smooth(32)
    other = np.clip(rng.normal(0, 0.5, (32, 32, 32, 3)), -1, 1).astype(np.float32)
    kw = dict(patches=32, projections=128)
    same, diff = metrics.swd(a, b, **kw), metrics.swd(a, other, **kw)
    assert 0 <= same < 0.6 * diff
    assert metrics.swd(a, b, **kw) == same                 # seeded: repeatable
    assert len(metrics.laplacian_pyramid(a)) == 2          # 32 and 16
    # Per level, finest first: the smooth sets differ from white noise most in fine detail.
    levels = metrics.swd_levels(a, other, **kw)
    assert len(levels) == 2 and np.mean(levels) == pytest.approx(diff)
    assert levels[0] > levels[1]


def test_psnr_and_ssim_of_identical_images() -> None:
    x = tf.random.uniform([2, 16, 16, 3], -1, 1, seed=3)
    assert metrics.ssim(x, x) == pytest.approx(1.0)
    assert metrics.psnr(x, x * 0.9) > 15


def test_cluster_spec_becomes_tf_config() -> None:
    spec = {"cluster": {"workerpool0": ["a:1"], "workerpool1": ["b:2", "c:3"]},
            "task": {"type": "workerpool1", "index": 1}}
    cfg = cluster.tf_config_from_cluster_spec(spec)
    assert cfg == {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
                   "task": {"type": "worker", "index": 1}}


def test_cluster_detect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("CLUSTER_SPEC", raising=False)
    assert cluster.detect().is_chief and not cluster.detect().distributed
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    c = cluster.detect()
    assert c.distributed and not c.is_chief


def test_presets() -> None:
    seed = presets.resolve("seed", {})
    assert (seed.image_size, seed.embedding_size, seed.width) == (64, 100, 64)
    assert presets.levels(64) == 4 and presets.levels(32) == 3 and presets.levels(128) == 5
    assert presets.resolve("tiny", {"max_steps": 3, "seed": None}).max_steps == 3
    with pytest.raises(ValueError):
        presets.resolve("tiny", {"image_size": 48})


def test_default_patience_is_a_third_of_the_budgets_evaluations_and_at_least_4() -> None:
    """quick's 30 minutes at 2.5 keep their 4 evaluations; 60 minutes wait 8 (20 minutes),
    not 10 minutes as a fixed 4 would; a given --patience always wins."""
    def patience(preset: str, **over: object) -> int:
        return presets.resolve(preset, over).patience
    assert patience("quick") == 4
    assert patience("quick", max_minutes=60.0) == 8
    assert patience("quick", max_minutes=61.0) == 9         # 24.4 evaluations: rounds up
    assert patience("quick", max_minutes=5.0) == 4
    assert patience("quick", max_minutes=60.0, patience=2) == 2
    assert patience("seed") == 7                            # 20,000 steps, every 1,000
    assert patience("seed", eval_minutes=5.0) == 4          # timed evaluations, a step budget
    assert patience("quick", eval_minutes=0.0) == 4         # a timed budget, evaluations by step
    assert patience("tiny") == 4


def test_seed_architecture_sizes() -> None:
    from trainer.model import build_decoder, build_discriminator, build_encoder
    cfg = presets.resolve("seed", {})
    enc, dec, disc = build_encoder(cfg), build_decoder(cfg), build_discriminator(cfg)
    convs = [l for l in enc.layers if l.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [64, 128, 256, 512]
    assert all(c.kernel_size == (4, 4) and c.strides == (2, 2) for c in convs)
    assert [o.shape[-1] for o in enc.outputs] == [100, 100]
    assert tuple(dec.output.shape) == (None, 64, 64, 3)
    logit, feat, top = disc.outputs
    assert tuple(logit.shape) == (None, 1) and tuple(feat.shape) == (None, 8, 8, 256)
    assert tuple(top.shape) == (None, 4, 4, 512)


def test_discriminator_width_is_separate_from_the_generators() -> None:
    from trainer.model import build_decoder, build_discriminator
    cfg = presets.resolve("quick", {"d_width": 64, "d_scales": 1})
    disc, dec = build_discriminator(cfg), build_decoder(cfg)
    assert [l.filters for l in disc.layers if hasattr(l, "filters")] == [64, 128, 256]
    assert [l.filters for l in dec.layers if hasattr(l, "filters")] == [64, 32, 3]


def test_discriminator_depth_adds_3x3_stride_1_layers_at_every_level() -> None:
    from trainer.model import build_discriminator
    disc = build_discriminator(presets.resolve("quick", {"d_depth": 1, "d_scales": 1}))

    def first(v: int | tuple[int, int]) -> int:     # Conv2D keeps tuples, SpectralConv2D ints
        return v if isinstance(v, int) else v[0]

    convs = [(l.filters, first(l.kernel_size), first(l.strides))
             for l in disc.layers if hasattr(l, "filters")]
    assert convs == [(32, 4, 2), (32, 3, 1), (64, 4, 2), (64, 3, 1), (128, 4, 2), (128, 3, 1)]
    logit, feat, _ = disc.outputs
    assert tuple(feat.shape) == (None, 8, 8, 64) and tuple(logit.shape) == (None, 1)


@pytest.mark.parametrize("spectral", [False, True])
def test_discriminator_attention_joins_as_the_identity_at_its_size_and_then_trains(spectral: bool) -> None:
    """--d-attn S: SAGAN's block after D's stage whose map is SxS, its gate at 0, so a new
    run's D starts as without it; every projection is a weight the optimiser sees."""
    import tensorflow as tf

    from trainer.model import SelfAttention, build_discriminator
    cfg = presets.resolve("quick", {"d_attn": 8, "d_scales": 1, "spectral_norm": spectral})
    disc = build_discriminator(cfg)
    block = disc.get_layer("attention")
    assert isinstance(block, SelfAttention) and tuple(block.output.shape) == (None, 8, 8, 64)
    assert len(block.trainable_weights) == 9        # gate, and kernel + bias of q, k, v, out
    x = tf.random.stateless_normal([4, 8, 8, 64], seed=[1, 2])
    assert float(tf.reduce_max(tf.abs(block(x) - x))) == 0.0
    images = tf.random.stateless_uniform([4, 32, 32, 3], seed=[3, 4], minval=-1.0, maxval=1.0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(disc(images, training=True)[0])
    grads = dict(zip([v.path for v in disc.trainable_variables],
                     tape.gradient(loss, disc.trainable_variables)))
    assert float(tf.abs(grads["attention/gate"])) > 0.0      # the gate opens from 0
    block.gate.assign(0.5)
    assert float(tf.reduce_max(tf.abs(block(x) - x))) > 0.0
    with pytest.raises(ValueError, match="--d-attn 32 is not one of D's feature-map sizes at image "
                                         "size 32: use 0 .off. or one of 16, 8, 4"):
        presets.resolve("quick", {"d_attn": 32})


def test_discriminator_dropout_drops_on_every_call_and_keeps_the_checkpoint_layout(tmp_path: Path) -> None:
    """--d-dropout R: units dropped after D's levels from the feature level on, on real
    and fake calls alike (training=False too), the survivors scaled by 1/(1-R); D's
    variables are the same as without it, so a run checkpointed without dropout resumes
    with it (a layer of its own would shift a functional model's checkpoint positions)."""
    import tensorflow as tf

    from trainer.model import LeakyReLU, build_discriminator
    act = LeakyReLU(0.2, dropout=0.3)
    x = tf.ones([64, 8, 8, 16])
    a, b = act(x).numpy(), act(x, training=False).numpy()
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.7)}
    assert abs(float((a == 0).mean()) - 0.3) < 0.02 and abs(float((b == 0).mean()) - 0.3) < 0.02
    assert (a != b).any()                                   # a new mask each call
    assert float(np.abs(LeakyReLU(0.2)(x).numpy() - 1.0).max()) == 0.0

    plain = build_discriminator(presets.resolve("quick", {}))
    cfg = presets.resolve("quick", {"d_dropout": 0.3})
    dropped = build_discriminator(cfg)
    rates = [layer.dropout for layer in dropped.layers if isinstance(layer, LeakyReLU)]
    assert sorted(rates) == [0.0, 0.0, 0.3, 0.3, 0.3]   # whole: each stack's first level
    assert [v.shape for v in plain.variables] == [v.shape for v in dropped.variables]
    prefix = tf.train.Checkpoint(discriminator=plain).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(discriminator=dropped).restore(prefix).assert_existing_objects_matched()
    images = tf.random.stateless_uniform([8, 32, 32, 3], seed=[3, 4], minval=-1.0, maxval=1.0)
    assert float(tf.reduce_max(tf.abs(dropped(images)[0] - dropped(images)[0]))) > 0.0
    with pytest.raises(ValueError, match="--d-dropout 1.0 is out of range; use 0 .off. up to below 1"):
        presets.resolve("quick", {"d_dropout": 1.0})


def test_generator_mapping_adds_a_residual_mlp_that_starts_as_the_identity() -> None:
    """--g-mapping N: z + an MLP of z (N dense layers of the embedding's width, leaky ReLUs
    between) before DCGAN's first layer, its last layer at zero so training starts from
    DCGAN's generator; 0 leaves the generator layer for layer as it was."""
    import keras
    import numpy as np

    from trainer.model import LeakyReLU, build_decoder

    def dense(cfg: presets.Config) -> list[int]:
        return [l.units for l in build_decoder(cfg).layers if hasattr(l, "units")]

    assert dense(presets.resolve("quick", {})) == [4 * 4 * 128]
    dec = build_decoder(presets.resolve("quick", {"g_mapping": 3}))
    assert dense(presets.resolve("quick", {"g_mapping": 3})) == [64, 64, 64, 4 * 4 * 128]
    assert [type(l).__name__ for l in dec.layers[1:7]] == ["MappingDense", "LeakyReLU"] * 2 + ["MappingDense", "Add"]
    assert all(l.dropout == 0.0 for l in dec.layers if isinstance(l, LeakyReLU))
    mapped = keras.Model(dec.input, dec.layers[6].output)
    z = np.random.default_rng(0).standard_normal((8, 64)).astype("float32")
    np.testing.assert_array_equal(mapped(z).numpy(), z)                 # the identity at the start
    dec.layers[5].kernel.assign(np.ones((64, 64), "float32"))           # and not once it learns
    assert np.abs(mapped(z).numpy() - z).max() > 0.1
    for bad in (1, 9):
        with pytest.raises(ValueError, match=f"--g-mapping {bad} is out of range: use 0 .off. or 2 up to 8"):
            presets.resolve("quick", {"g_mapping": bad})
    for bad_lr in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"--g-mapping-lr {bad_lr} is out of range"):
            presets.resolve("quick", {"g_mapping": 2, "g_mapping_lr": bad_lr})


def test_g_latent_needs_the_gan_loss_and_a_weight_of_0_or_more() -> None:
    assert presets.resolve("quick", {"g_latent": 1.0}).g_latent == 1.0
    for overrides in ({"g_latent": -1.0}, {"g_latent": 1.0, "loss": "vaegan"}):
        with pytest.raises(ValueError, match="--g-latent .* needs a weight of 0 or more and --loss gan"):
            presets.resolve("quick", overrides)


@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
def test_mapping_layer_keeps_he_scale_and_learns_lr_mul_as_fast(lr_mul: float) -> None:
    """--g-mapping-lr: the weights the layer computes with have He's scale whatever lr_mul,
    and one Adam step moves them lr_mul times the learning rate relative to that scale (an
    equalised layer's step at lr_mul 1), so 0.01 is StyleGAN's hundredfold slower mapping."""
    import keras
    import numpy as np
    import tensorflow as tf

    from trainer.model import MappingDense

    tf.random.set_seed(0)
    layer = MappingDense(256, lr_mul=lr_mul)
    layer.build((None, 256))
    he = (2.0 / 256) ** 0.5
    before = layer.effective_kernel().numpy()
    assert abs(before.std() / he - 1) < 0.02
    z = tf.random.normal((32, 256))
    out = layer(z)
    np.testing.assert_allclose(out.numpy(), z.numpy() @ before, atol=1e-4)
    opt = keras.optimizers.Adam(1e-3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(z))
    opt.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))
    moved = np.abs(layer.effective_kernel().numpy() - before).mean() / he
    np.testing.assert_allclose(moved, 1e-3 * lr_mul, rtol=0.05)


def test_decoder_attention_joins_as_the_identity_at_its_size_and_then_trains() -> None:
    """--g-attn S: the same block after the decoder's SxS level, its gate at 0, so a new
    run's decoder draws what DCGAN's would; the gate takes a gradient through the pixels."""
    import tensorflow as tf

    from trainer.model import SelfAttention, build_decoder
    cfg = presets.resolve("quick", {"g_attn": 16})
    with_block, without = build_decoder(cfg), build_decoder(presets.resolve("quick", {}))
    block = with_block.get_layer("attention")
    assert isinstance(block, SelfAttention) and tuple(block.output.shape) == (None, 16, 16, 32)
    assert len(with_block.trainable_weights) == len(without.trainable_weights) + 9
    x = tf.random.stateless_normal([4, 16, 16, 32], seed=[1, 2])
    assert float(tf.reduce_max(tf.abs(block(x) - x))) == 0.0
    z = tf.random.stateless_normal([4, cfg.embedding_size], seed=[3, 4])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(with_block(z, training=True) ** 2)
    grads = dict(zip([v.path for v in with_block.trainable_variables],
                     tape.gradient(loss, with_block.trainable_variables)))
    assert float(tf.abs(grads["attention/gate"])) > 0.0
    with pytest.raises(ValueError, match="--g-attn 32 is not one of the decoder's feature-map sizes "
                                         "at image size 32: use 0 .off. or one of 16, 8, 4"):
        presets.resolve("quick", {"g_attn": 32})


def test_generator_depth_adds_3x3_stride_1_layers_at_its_coarse_levels() -> None:
    """--g-depth K: a 3x3 conv at the decoder's K coarsest levels, 4x4 first; 0 is DCGAN's
    generator layer for layer, so earlier jobs' checkpoints keep their layout."""
    from trainer.model import build_decoder

    def convs(cfg: presets.Config) -> list[tuple[int, int, int]]:
        dec = build_decoder(cfg)
        assert tuple(dec.output.shape) == (None, 32, 32, 3)
        return [(l.filters, l.kernel_size[0], l.strides[0]) for l in dec.layers if hasattr(l, "filters")]

    assert convs(presets.resolve("quick", {})) == [(64, 4, 2), (32, 4, 2), (3, 4, 2)]
    assert convs(presets.resolve("quick", {"g_depth": 2})) == \
        [(128, 3, 1), (64, 4, 2), (64, 3, 1), (32, 4, 2), (3, 4, 2)]
    with pytest.raises(ValueError, match="--g-depth 4 is out of range at image size 32: use 0 .* up to 3"):
        presets.resolve("quick", {"g_depth": 4})
