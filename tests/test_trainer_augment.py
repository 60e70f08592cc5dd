"""DiffAugment and label smoothing, in-process: what D sees, and the loss it is trained with."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from trainer import augment, losses, presets  # noqa: E402 - after importorskip

ALL = ("color", "translation", "cutout")
SEED = tf.constant([7, 11], tf.int64)


def images(n: int = 6, size: int = 16, seed: int = 0) -> tf.Tensor:
    return tf.random.stateless_uniform([n, size, size, 3], [seed, 1], -1.0, 1.0)


def test_empty_policy_is_the_identity() -> None:
    x = images()
    assert augment.augment(x, "", SEED) is x
    d_in = augment.discriminator_input(x, x + 1, x - 1, (), SEED)
    np.testing.assert_array_equal(d_in.numpy(), tf.concat([x, x + 1, x - 1], 0).numpy())


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "scale", "rotate",
                                    "color,translation,cutout", "color,scale,rotate,translation"])
def test_shape_dtype_and_range(policy: str) -> None:
    x = images(8, 32)
    y = augment.augment(x, policy, SEED).numpy()
    assert y.shape == (8, 32, 32, 3) and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    assert not np.array_equal(y, x.numpy())
    if "color" not in policy:                   # geometric ops only move or zero pixels
        assert y.min() >= -1.0 and y.max() <= 1.0
    else:                                       # the paper's colour ops stay bounded
        assert np.abs(y).max() < 6.0


def test_translation_shifts_with_zero_fill_and_cutout_zeroes_a_half_size_square() -> None:
    x = tf.ones([64, 16, 16, 3])
    p = augment.draw(("translation",), 64, 16, SEED)
    shift = p["shift"].numpy()
    assert np.abs(shift).max() <= 2 and len({tuple(s) for s in shift}) > 5   # 16 / 8 = 2
    y = augment.apply(x, p).numpy()[..., 0]
    for img, (dy, dx) in zip(y, shift):
        assert img.sum() == (16 - abs(dy)) * (16 - abs(dx))   # the uncovered band is 0
        if dy > 0:
            assert np.all(img[:dy] == 0) and np.all(img[dy:, max(dx, 0):16 + min(dx, 0)] == 1)

    # A marked pixel moves by exactly (dy, dx).
    m = np.zeros([1, 16, 16, 3], np.float32)
    m[0, 5, 9] = 1.0
    moved = augment.apply(tf.constant(m), {"shift": tf.constant([[2, -1]])}).numpy()
    assert moved[0, 7, 8, 0] == 1.0 and moved.sum() == 3.0

    c = augment.apply(x, augment.draw(("cutout",), 64, 16, SEED)).numpy()[..., 0]
    zeros = (c == 0).sum(axis=(1, 2))
    assert zeros.max() == 64 and zeros.min() > 0          # 8x8, clipped at the border


def test_scale_and_rotate_resample_about_the_centre() -> None:
    """Identity parameters give the image back; a zoom keeps a flat image flat; a shrink or
    a turn uncovers the corners (0); a quarter turn moves a marked pixel where it should."""
    x = images(4, 16)
    ones, zeros = tf.ones([4]), tf.zeros([4])
    np.testing.assert_allclose(augment.apply(x, {"scale": ones, "angle": zeros}).numpy(),
                               x.numpy(), atol=1e-6)
    flat = tf.ones([4, 16, 16, 3])
    np.testing.assert_allclose(augment.apply(flat, {"scale": ones * 1.5}).numpy(), 1.0, atol=1e-6)
    shrunk = augment.apply(flat, {"scale": ones * 0.5}).numpy()[0, ..., 0]
    assert shrunk[0, 0] == 0 and shrunk[8, 8] == pytest.approx(1.0) and 0.2 < shrunk.mean() < 0.35
    turned = augment.apply(flat, {"angle": ones * 0.3}).numpy()[0, ..., 0]
    assert turned[0, 0] == 0 and turned[8, 8] == pytest.approx(1.0)
    m = np.zeros([1, 16, 16, 3], np.float32)
    m[0, 2, 7] = 1.0                      # 5.5 rows above the centre, 0.5 columns left
    quarter = augment.apply(tf.constant(m), {"angle": tf.constant([np.pi / 2])}).numpy()[0, ..., 0]
    # Above the centre goes to right of it: 0.5 rows above, 5.5 columns right.
    assert np.unravel_index(quarter.argmax(), quarter.shape) == (7, 13) and quarter.max() > 0.99

    p = augment.draw(("scale", "rotate"), 2000, 16, SEED)
    log2 = np.log2(p["scale"].numpy())
    assert abs(log2.mean()) < 0.02 and abs(log2.std() - 0.2) < 0.02        # ADA's 2^N(0, 0.2^2)
    angles = p["angle"].numpy()
    assert np.abs(angles).max() <= augment.ROTATE_MAX and np.abs(angles).max() > 0.9 * augment.ROTATE_MAX


def test_gradient_reaches_the_input() -> None:
    x = tf.Variable(images(4, 16))
    grads = {}
    for policy in (",".join(ALL), "translation,cutout", "scale,rotate"):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(augment.augment(x, policy, SEED)))
        g = tape.gradient(loss, x)
        assert g is not None and np.all(np.isfinite(g.numpy()))
        grads[policy] = g.numpy()
    assert np.abs(grads[",".join(ALL)]).sum() > 0 and np.abs(grads["scale,rotate"]).sum() > 0
    # Geometric only: cut-out and shifted-out pixels get no gradient, the others 2 * x.
    g, xv = grads["translation,cutout"], x.numpy()
    reached = g != 0
    assert 0.3 < reached.mean() < 1.0
    np.testing.assert_allclose(g[reached], 2 * xv[reached], rtol=1e-6)


def test_same_seed_same_output_other_seed_other_output() -> None:
    x = images(8, 16)
    policy = ",".join(ALL)
    a = augment.augment(x, policy, SEED).numpy()
    b = augment.augment(x, policy, tf.constant([7, 11], tf.int64)).numpy()
    c = augment.augment(x, policy, tf.constant([7, 12], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)

    fn = tf.function(lambda t, s: augment.augment(t, policy, s), autograph=False)
    np.testing.assert_allclose(fn(x, SEED).numpy(), a, atol=1e-6)   # graph mode draws the same


def test_real_and_reconstruction_share_parameters_prior_decodes_do_not() -> None:
    x = images(8, 16)
    d_in = augment.discriminator_input(x, x, x, ALL, SEED).numpy()
    real, rec, prior = np.split(d_in, 3)
    np.testing.assert_array_equal(real, rec)       # x[i] and xr[i]: the same augmentation
    assert not np.array_equal(real, prior)         # the prior decodes draw their own
    assert not np.array_equal(real, x.numpy())


def test_policy_parsing_and_config_validation() -> None:
    assert presets.augment_policy(" color , cutout ") == ("color", "cutout")
    assert presets.augment_policy("") == ()
    with pytest.raises(ValueError, match="unknown augmentation flip"):
        presets.augment_policy("color,flip")
    cfg = presets.resolve("tiny", {"augment": "translation, color", "label_smoothing": 0.1})
    assert cfg.augment == "translation,color" and cfg.label_smoothing == 0.1
    with pytest.raises(ValueError, match="label smoothing"):
        presets.resolve("tiny", {"label_smoothing": 0.7})
    assert presets.resolve("tiny", {}).augment == "" and presets.Config().label_smoothing == 0.0


def test_label_smoothing_moves_the_real_target_only() -> None:
    real = tf.constant([3.0, -1.0, 0.5])
    fake = [tf.constant([-2.0, 0.0]), tf.constant([1.0])]
    np.testing.assert_array_equal(losses.d_loss(real, fake, 0.0).numpy(),
                                  losses.d_loss(real, fake).numpy())
    # Against target t the real term is t*softplus(-l) + (1-t)*softplus(l).
    sp = lambda v: np.log1p(np.exp(v))  # noqa: E731 - softplus, as the formula reads
    r = real.numpy()
    fake_term = (sp(np.array([-2.0, 0.0])).mean() + sp(np.array([1.0])).mean()) / 2
    want = (0.9 * sp(-r) + 0.1 * sp(r)).mean() + fake_term
    np.testing.assert_allclose(losses.d_loss(real, fake, 0.1).numpy(), want, rtol=1e-6)
    # Smoothed, D's real loss is smallest at a finite logit, log(t / (1 - t)), not at +inf.
    logits = tf.constant(np.linspace(-2, 8, 1001, dtype=np.float32))
    per = [float(losses.d_loss(logits[i:i + 1], [tf.constant([-50.0])], 0.1))
           for i in range(0, 1001, 10)]
    best = float(logits[int(np.argmin(per)) * 10])
    assert abs(best - np.log(0.9 / 0.1)) < 0.11


def test_r1_penalty_is_the_squared_input_gradient_norm() -> None:
    w = tf.random.stateless_normal([1, 4, 4, 3], [3, 4])
    x = images(5, 4)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(x * w)                 # a linear D: its gradient is w everywhere
    want = float(tf.reduce_sum(tf.square(w)))
    np.testing.assert_allclose(float(losses.r1_penalty(tape.gradient(total, x))), want, rtol=1e-5)


def test_g_topk_keeps_the_samples_d_rates_most_real_and_only_they_train_g() -> None:
    """--g-topk: the generator's loss (and so its gradient) comes from the best-rated fakes.

    Rows are ranked by their logits summed over D's scales, so a sample one scale likes
    and the other hates ranks by the balance of the two.
    """
    logits = tf.Variable([[1.0, 0.0], [3.0, 3.0], [-2.0, 0.0], [0.5, 0.75], [4.0, -4.0]])
    kept = losses.top_k_rows(logits, 0.5)                       # ceil(2.5) = 3 rows
    np.testing.assert_array_equal(kept.numpy(), [[3.0, 3.0], [0.5, 0.75], [1.0, 0.0]])
    assert losses.top_k_rows(logits, 0.01).shape == (1, 2)      # never fewer than one
    assert losses.top_k_rows(logits, 1.0) is logits             # 1: untouched, no gather
    with tf.GradientTape() as tape:
        loss = losses.g_loss([losses.top_k_rows(logits, 0.5)])
    grad = tf.convert_to_tensor(tape.gradient(loss, logits)).numpy()    # gather: IndexedSlices
    assert (grad[[0, 1, 3]] < 0).all()                          # raising them lowers the loss
    np.testing.assert_array_equal(grad[[2, 4]], 0.0)            # the dropped rows: nothing
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="--g-topk"):
            presets.resolve("tiny", {"g_topk": bad})
    with pytest.raises(ValueError, match="--g-topk 0.5 needs --loss gan"):
        presets.resolve("tiny", {"g_topk": 0.5, "loss": "vaegan"})
    assert presets.resolve("tiny", {"g_topk": 0.5}).g_topk == 0.5
    np.testing.assert_array_equal(losses.top_k_rows(logits, tf.constant(0.5)).numpy(), kept.numpy())


def test_g_topk_share_falls_by_0_99_an_epoch_to_the_flags_fraction() -> None:
    from types import SimpleNamespace

    from trainer.loop import Trainer

    def share(step: int, topk: float, train: int = 100, batch: int = 10) -> float:
        this = SimpleNamespace(cfg=presets.resolve("tiny", {"g_topk": topk}), batch=batch,
                               step=tf.Variable(step, dtype=tf.int64), topk=True,
                               manifest={"counts": {"train": train}})
        return float(Trainer._topk_fraction(this))

    assert share(0, 0.5) == 1.0                                  # D's ranking is no guide yet
    np.testing.assert_allclose(share(30, 0.5), 0.99 ** 3, rtol=1e-6)     # 3 epochs
    assert share(10_000, 0.5) == 0.5 and share(10_000, 0.75) == 0.75
    assert share(10_000, 1.0) == 1.0


def test_g_topk_last_turns_top_k_on_over_the_end_of_the_budget_only() -> None:
    """--g-topk-last F: every sample trains the generator until the last F of the budget
    (steps, or minutes under --max-minutes); from the first step by default."""
    from types import SimpleNamespace

    from trainer.loop import Trainer

    def on(step: int, trained: float = 0.0, **overrides) -> bool:
        return Trainer.topk_for(SimpleNamespace(cfg=presets.resolve("tiny", overrides)), step, trained)

    late = {"g_topk": 0.5, "g_topk_last": 0.25, "max_steps": 100}
    assert [on(s, **late) for s in (0, 74, 75, 99)] == [False, False, True, True]
    by_minutes = {"g_topk": 0.5, "g_topk_last": 0.5, "max_steps": 10, "max_minutes": 10.0}
    assert [on(9, t * 60, **by_minutes) for t in (0, 4.9, 5, 12)] == [False, False, True, True]
    assert on(0, g_topk=0.5)                                     # the default: from the first step
    assert not on(99, g_topk=1.0, g_topk_last=0.25, max_steps=100)   # no top-k to turn on
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="--g-topk-last"):
            presets.resolve("tiny", {"g_topk": 0.5, "g_topk_last": bad})


def test_bcr_consistency_is_the_squared_logit_change_summed_over_scales() -> None:
    augmented = tf.constant([[1.0, 2.0], [0.0, -1.0]])
    clean = tf.constant([[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(float(losses.consistency(augmented, clean)), (5.0 + 4.0) / 2)
    assert float(losses.consistency(clean, clean)) == 0.0
    with pytest.raises(ValueError, match="--bcr"):
        presets.resolve("tiny", {"bcr": -1.0, "augment": "color"})
    with pytest.raises(ValueError, match="--bcr 10.0 needs --augment"):
        presets.resolve("tiny", {"bcr": 10.0, "augment": ""})


@pytest.mark.slow
def test_bcr_g_topk_and_g_latent_train_in_the_real_loop_and_log_the_term(tmp_path, tiny_dataset_dir) -> None:
    """All three run inside the traced step, with and without the encoder (--encoder-every 2;
    --g-latent's gradient through the encoder into the decoder only on the encoder's steps)."""
    import json

    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    done = run_trainer(tiny_dataset_dir, job, "--bcr", "10", "--augment", "color,translation",
                       "--g-topk", "0.5", "--encoder-every", "2", "--log-every", "1",
                       "--g-latent", "1", "--max-steps", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["loss_bcr"] > 0 for r in rows)      # augmented logits differ from the clean ones
    config = json.loads((job / "config.json").read_text())["trainer"]
    assert (config["bcr"], config["g_topk"], config["g_latent"]) == (10.0, 0.5, 1.0)


def _train_6_then_resume_to_8(data_dir: Path, job: Path, *flags: str) -> list[dict]:
    """The real trainer for 6 steps, then resumed from its checkpoint to 8: the train rows,
    read through core's JobDir, the reader `jobs show` and the TUI use."""
    from core.jobdir import JobDir
    from tests.fixtures.models import run_trainer

    for steps in ("6", "8"):
        done = run_trainer(data_dir, job, *flags, "--max-steps", steps)
        assert done.returncode == 0, done.stderr[-3000:]
    rows = JobDir(str(job)).metrics().train
    assert [r["step"] for r in rows] == list(range(1, 9))
    return rows


@pytest.mark.slow
def test_apa_adapts_its_share_by_ada_rule_and_resumes_it(tmp_path, tiny_dataset_dir) -> None:
    """--apa in the real loop: each step moves apa_p by the step's images / 100,000 towards
    the side of the target that E[sign D(real)] is on (never below 0), the checkpoint keeps
    it, and a resume goes on from it rather than from 0."""
    import json

    job = tmp_path / "job"
    rows = _train_6_then_resume_to_8(tiny_dataset_dir, job, "--apa", "0.1", "--augment",
                                     "color,translation", "--log-every", "1")
    batch = json.loads((job / "config.json").read_text())["trainer"]["batch_size"]
    p = 0.0
    for r in rows:
        sign = 1.0 if r["d_real_sign"] > 0.1 else -1.0 if r["d_real_sign"] < 0.1 else 0.0
        p = max(0.0, p + sign * batch / 100_000)
        assert r["apa_p"] == pytest.approx(p, abs=1e-6), r
    assert rows[-1]["apa_p"] > 0         # D is sure of the real images early on


def test_apa_needs_a_target_below_1_and_the_gan_loss() -> None:
    assert presets.resolve("quick", {"apa": 0.6}).apa == 0.6
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=f"--apa {bad} is out of range; use 0 .off. or a target"):
            presets.resolve("quick", {"apa": bad})
    with pytest.raises(ValueError, match="--apa needs --loss gan"):
        presets.resolve("quick", {"apa": 0.6, "loss": "vaegan"})


def test_apa_late_moves_only_while_adas_p_is_at_1_and_falls_back_below() -> None:
    """--apa-late's rule: with ADA's p below 1 the second probability falls (never below 0)
    whatever D says; at 1 it follows ADA's rule on E[sign D(real)]."""
    step = 32 / augment.ADAPT_IMAGES
    q = tf.constant(0.2)
    np.testing.assert_allclose(float(augment.adapt_late(q, tf.constant(0.99), tf.constant(1.0), 0.6, 32)),
                               0.2 - step)
    assert float(augment.adapt_late(tf.constant(0.0), tf.constant(0.5), tf.constant(1.0), 0.6, 32)) == 0.0
    np.testing.assert_allclose(float(augment.adapt_late(q, tf.constant(1.0), tf.constant(0.9), 0.6, 32)),
                               0.2 + step)
    np.testing.assert_allclose(float(augment.adapt_late(q, tf.constant(1.0), tf.constant(0.1), 0.6, 32)),
                               0.2 - step)


def test_apa_late_swaps_real_images_only_once_its_share_is_above_0() -> None:
    """The pseudo-real images behind the gate: at apa_p 0 D's real images are the batch as
    it is (and the decoder pass is skipped); at 1 every one is the generator's."""
    from types import SimpleNamespace

    from trainer.loop import Trainer
    from trainer.model import VaeGan

    cfg = presets.resolve("tiny", {"apa": 0.6, "apa_late": True, "augment": "translation",
                                   "augment_target": 0.6})
    this = SimpleNamespace(cfg=cfg, model=VaeGan(cfg), apa_p=tf.Variable(0.0))
    x, s = images(4, 16, seed=1), tf.constant([3, 4], tf.int32)
    np.testing.assert_array_equal(Trainer._pseudo_real(this, x, s).numpy(), x.numpy())
    this.apa_p.assign(1.0)
    swapped = Trainer._pseudo_real(this, x, s).numpy()
    assert np.abs(swapped - x.numpy()).reshape(4, -1).max(axis=1).min() > 0.01   # every one
    for bad in ({"apa_late": True},                                     # no --apa
                {"apa": 0.6, "apa_late": True, "augment_target": 0.0}):  # ADA's p fixed at 1
        with pytest.raises(ValueError, match="--apa-late needs --apa, --augment and --augment-target"):
            presets.resolve("quick", bad)


@pytest.mark.slow
def test_apa_late_stays_off_while_adas_p_climbs_in_the_real_loop(tmp_path, tiny_dataset_dir) -> None:
    """In the real loop, ADA's p starts at 0, so --apa-late's share stays 0 at every step
    (the gated graph traces and trains), and the run resumes with it."""
    job = tmp_path / "job"
    rows = _train_6_then_resume_to_8(tiny_dataset_dir, job, "--apa", "0.1", "--apa-late",
                                     "--augment", "color,translation", "--augment-target", "0.6",
                                     "--log-every", "1")
    assert all(r["augment_p"] < 1 for r in rows)
    assert [r["apa_p"] for r in rows] == [0.0] * 8
    assert max(r["augment_p"] for r in rows) > 0     # ADA moved; the gate held APA


@pytest.mark.parametrize("spectral", [False, True])
def test_r1_reaches_the_discriminator_update_through_the_step_tape(spectral: bool) -> None:
    """--r1 adds gamma/2 x R1 to D's loss, and D's weights get the penalty's gradient.

    The penalty is a gradient taken inside the step's own tape; a slip there (a sum taken
    outside the inner tape) makes it None and silently trains without it.
    """
    from types import SimpleNamespace

    from trainer.loop import Trainer
    from trainer.model import VaeGan

    cfg = presets.resolve("tiny", {"r1": 2.0, "spectral_norm": spectral,
                                   "d_batch_norm": not spectral})
    m = VaeGan(cfg)
    this = SimpleNamespace(cfg=cfg, model=m, adaptive=False)
    real, fake = images(4, 16, seed=1), images(4, 16, seed=2)
    with tf.GradientTape() as outer:
        ((lr, _, _), (lf, _, _)), grad = Trainer._discriminate(this, real, fake, r1=True)
        assert grad is not None and grad.shape == real.shape
        out = Trainer._d_terms(this, {"loss_d": losses.d_loss(lr, [lf])}, lr, [lf], grad)
        penalty = 0.5 * cfg.r1 * out["loss_r1"]
    assert float(out["loss_r1"]) > 0
    np.testing.assert_allclose(float(out["loss_d"]),
                               float(losses.d_loss(lr, [lf])) + float(penalty), rtol=1e-5)
    g = outer.gradient(penalty, m.discriminator.trainable_variables)
    assert any(v is not None and float(tf.reduce_sum(tf.abs(v))) > 0 for v in g)
    # Off: no gradient is taken and the losses are what they were.
    off = SimpleNamespace(cfg=presets.resolve("tiny", {}), model=m, adaptive=False)
    assert Trainer._discriminate(off, real, fake, r1=False)[1] is None
    assert Trainer._d_terms(off, {"loss_d": lr}, lr, [lf], None) == {"loss_d": lr}
    # Lazy: a step that takes the penalty weighs it N times.
    lazy = SimpleNamespace(cfg=presets.resolve("tiny", {"r1": 2.0, "r1_every": 4}), model=m,
                           adaptive=False)
    out4 = Trainer._d_terms(lazy, {"loss_d": losses.d_loss(lr, [lf])}, lr, [lf], grad)
    np.testing.assert_allclose(float(out4["loss_d"]) - float(losses.d_loss(lr, [lf])),
                               4 * float(penalty), rtol=1e-4)
    with pytest.raises(ValueError, match="--r1"):
        presets.resolve("tiny", {"r1": -1.0})
    with pytest.raises(ValueError, match="--r1-every 0"):
        presets.resolve("tiny", {"r1": 1.0, "r1_every": 0})
    with pytest.raises(ValueError, match="--r1-every 16 needs --r1"):
        presets.resolve("tiny", {"r1_every": 16})


def test_r1_last_turns_the_penalty_on_over_the_end_of_the_budget_only() -> None:
    """--r1-last F: no penalty until the last F of the budget (steps, or minutes under
    --max-minutes); from the first step by default."""
    from types import SimpleNamespace

    from trainer.loop import Trainer

    def on(step: int, trained: float = 0.0, **overrides) -> bool:
        return Trainer.r1_for(SimpleNamespace(cfg=presets.resolve("tiny", overrides)), step, trained)

    late = {"r1": 0.1, "r1_last": 0.25, "max_steps": 100}
    assert [on(s, **late) for s in (0, 74, 75, 99)] == [False, False, True, True]
    by_minutes = {"r1": 0.1, "r1_last": 0.5, "max_steps": 10, "max_minutes": 60.0}
    assert [on(9, t * 60, **by_minutes) for t in (0, 29.9, 30, 61)] == [False, False, True, True]
    assert on(0, r1=0.1)                                         # the default: from the first step
    assert not on(0, max_steps=100)                              # no --r1: never
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"--r1-last {bad} is out of range"):
            presets.resolve("tiny", {"r1": 0.1, "r1_last": bad})
    with pytest.raises(ValueError, match="--r1-last 0.5 needs --r1"):
        presets.resolve("tiny", {"r1_last": 0.5})


@pytest.mark.slow
def test_lazy_r1_takes_the_penalty_on_every_nth_step_of_the_real_loop(tmp_path, tiny_dataset_dir) -> None:
    """--r1-every 3: the penalty is computed on steps 0 and 3 only; the rows between carry
    the last one (a penalty on every step would give every row its own value)."""
    import json

    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    done = run_trainer(tiny_dataset_dir, job, "--r1", "1", "--r1-every", "3", "--encoder-every", "2",
                       "--log-every", "1", "--max-steps", "6")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    r1 = [r["loss_r1"] for r in rows if r["kind"] == "train"]
    assert len(r1) == 6 and all(v > 0 for v in r1)
    assert r1[0] == r1[1] == r1[2] and r1[3] == r1[4] == r1[5] and r1[3] != r1[0]

    # --r1-last 0.5 over 8 steps: no penalty on steps 0-3, then on the steps in 3 from
    # there (step 6 only; step 7's row carries it), and the log says where it starts.
    late = tmp_path / "late"
    flags = ("--r1", "1", "--r1-every", "3", "--r1-last", "0.5", "--log-every", "1")
    done = run_trainer(tiny_dataset_dir, late, *flags, "--max-steps", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "R1 penalty from step 4 (--r1 1 --r1-last 0.5)" in done.stdout
    rows = [json.loads(line) for line in (late / "metrics.jsonl").read_text().splitlines()]
    r1 = [r.get("loss_r1") for r in rows if r["kind"] == "train"]
    assert r1[:6] == [None] * 6 and r1[6] > 0 and r1[7] == r1[6], r1
    # Resumed to 10 steps: already past the switch (step 8 of 10), so the log says so again
    # at the first step, and step 9 takes the penalty.
    resumed = run_trainer(tiny_dataset_dir, late, *flags, "--max-steps", "10")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "R1 penalty from step 8 (--r1 1 --r1-last 0.5)" in resumed.stdout
    rows = [json.loads(line) for line in (late / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("loss_r1", 0) > 0 for r in rows if r["kind"] == "train" and r["step"] == 10] == [True]


def test_adapt_moves_p_towards_more_augmentation_while_d_is_sure_of_the_reals() -> None:
    p = tf.constant(0.5)
    step = 32 / augment.ADAPT_IMAGES
    np.testing.assert_allclose(float(augment.adapt(p, tf.constant(0.9), 0.6, 32)), 0.5 + step)
    np.testing.assert_allclose(float(augment.adapt(p, tf.constant(0.1), 0.6, 32)), 0.5 - step)
    assert float(augment.adapt(tf.constant(0.0), tf.constant(-1.0), 0.6, 32)) == 0.0
    assert float(augment.adapt(tf.constant(1.0), tf.constant(1.0), 0.6, 10**7)) == 1.0


def test_probability_p_augments_that_share_of_images_and_pairs_decide_together() -> None:
    x = images(400, 16)
    policy = ALL

    def untouched(y: np.ndarray) -> np.ndarray:
        return np.all(y == x.numpy(), axis=(1, 2, 3))
    assert untouched(augment.augment(x, policy, SEED, tf.constant(0.0)).numpy()).all()
    np.testing.assert_array_equal(augment.augment(x, policy, SEED, tf.constant(1.0)).numpy(),
                                  augment.augment(x, policy, SEED).numpy())
    share = 1 - untouched(augment.augment(x, policy, SEED, tf.constant(0.3)).numpy()).mean()
    assert 0.22 < share < 0.38
    d_in = augment.discriminator_input(x, x, x, policy, SEED, tf.constant(0.5)).numpy()
    real, rec, prior = np.split(d_in, 3)
    np.testing.assert_array_equal(real, rec)          # x[i] and xr[i]: both or neither
    assert 0.35 < 1 - untouched(real).mean() < 0.65 and 0.35 < 1 - untouched(prior).mean() < 0.65
    assert not np.array_equal(untouched(real), untouched(prior))


def test_late_augmentations_start_once_p_passes_1_and_pairs_share_them() -> None:
    """--augment-late: nothing more at p <= 1, then each image gets them with p - 1."""
    x = images(400, 16)
    base = augment.augment(x, ("translation",), SEED, tf.constant(1.0)).numpy()
    same = augment.augment(x, ("translation",), SEED, tf.constant(1.0), ("cutout",)).numpy()
    np.testing.assert_array_equal(same, base)
    more = augment.augment(x, ("translation",), SEED, tf.constant(1.4), ("cutout",)).numpy()
    changed = np.any(more != base, axis=(1, 2, 3)).mean()
    assert 0.32 < changed < 0.48
    d_in = augment.discriminator_input(x, x, x, ("translation",), SEED, tf.constant(1.5),
                                       ("cutout",)).numpy()
    plain = augment.discriminator_input(x, x, x, ("translation",), SEED, tf.constant(1.0)).numpy()
    real, rec, prior = np.split(d_in, 3)
    np.testing.assert_array_equal(real, rec)          # the pair gets the same cut-out
    cut = np.any(d_in != plain, axis=(1, 2, 3))
    assert 0.4 < cut.mean() < 0.6
    assert float(augment.adapt(tf.constant(1.0), tf.constant(1.0), 0.6, 32, 2.0)) > 1.0
    assert float(augment.adapt(tf.constant(2.0), tf.constant(1.0), 0.6, 10**7, 2.0)) == 2.0
    with pytest.raises(ValueError, match="--augment-late cutout needs --augment and --augment-target"):
        presets.resolve("tiny", {"augment": "color", "augment_late": "cutout"})
    with pytest.raises(ValueError, match="unknown augmentation flip"):
        presets.resolve("quick", {"augment_late": "flip"})
    assert presets.resolve("quick", {"augment_late": " cutout "}).augment_late == "cutout"


@pytest.mark.slow
def test_adaptive_augmentation_runs_logs_p_and_resumes_it(tmp_path, tiny_dataset_dir) -> None:
    """The real trainer with --augment-target: p starts at 0, is logged each step it logs,
    and a resumed run continues from the checkpointed p (not from 0 again)."""
    import json

    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    flags = ("--augment", "translation", "--augment-target", "0.6", "--augment-late", "cutout",
             "--log-every", "1")
    first = run_trainer(tiny_dataset_dir, job, *flags, "--max-steps", "6")
    assert first.returncode == 0, first.stderr[-3000:]
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    ps = [r["augment_p"] for r in rows if r["kind"] == "train"]
    assert len(ps) == 6 and all(0.0 <= p <= 1.0 for p in ps)
    step = 8 / augment.ADAPT_IMAGES                    # the tiny preset's batch of 8
    for move in np.abs(np.diff([0.0] + ps)):
        assert move < 1e-9 or abs(move - step) < 1e-6, move   # one batch's worth, or clipped
    ckpt = tf.train.load_checkpoint(str(job / "checkpoints"))
    saved = [k for k in ckpt.get_variable_to_shape_map() if k.startswith("augment_p")]
    assert saved and abs(float(ckpt.get_tensor(saved[0])) - ps[-1]) < 1e-6
    second = run_trainer(tiny_dataset_dir, job, *flags, "--max-steps", "8")
    assert second.returncode == 0, second.stderr[-3000:]
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in rows if r["kind"] == "train" and r["step"] == 7]
    assert resumed and abs(resumed[0]["augment_p"] - ps[-1]) <= step + 1e-6


def test_lecam_penalises_logits_only_beyond_the_other_sides_average() -> None:
    """relu(real - ema_fake)^2 + relu(ema_real - fake)^2, fakes of two kinds sharing a half."""
    real = tf.constant([2.0, -1.0])             # ema_fake -0.5: only 2.0 is beyond it
    fakes = [tf.constant([-3.0, 1.0]), tf.constant([0.0, 0.0])]    # ema_real 0.5
    got = float(losses.lecam(real, fakes, tf.constant(0.5), tf.constant(-0.5)))
    want = (2.5 ** 2 + 0.0) / 2 + ((3.5 ** 2 + 0.0) / 2 + (0.25 + 0.25) / 2) / 2
    assert abs(got - want) < 1e-6
    undecided = losses.lecam(tf.constant([-1.0]), [tf.constant([1.0])], tf.constant(0.5),
                             tf.constant(-0.5))
    assert float(undecided) == 0.0
    with pytest.raises(ValueError, match="--lecam"):
        presets.resolve("tiny", {"lecam": -0.1})
    with pytest.raises(ValueError, match="--lecam needs --loss gan or vaegan"):
        presets.resolve("tiny", {"lecam": 0.1, "loss": "seed"})


@pytest.mark.parametrize("loss", ["gan", "vaegan"])
@pytest.mark.slow
def test_lecam_runs_moves_its_averages_with_the_logged_logits_and_resumes_them(
        tmp_path, tiny_dataset_dir, loss: str) -> None:
    """The real trainer with --lecam: each step moves the averages 1 % towards that step's
    mean logits, they are kept in the checkpoint, and a resumed run goes on from them."""
    job = tmp_path / "job"
    rows = _train_6_then_resume_to_8(tiny_dataset_dir, job, "--lecam", "0.1", "--loss", loss,
                                     "--log-every", "1")
    assert all(r["loss_lecam"] >= 0.0 for r in rows) and any(r["loss_lecam"] > 0 for r in rows)
    ema = np.zeros(2)
    for r in rows:
        ema = 0.99 * ema + 0.01 * np.array([r["d_real_mean"], r["d_fake_mean"]])
    ckpt = tf.train.load_checkpoint(str(job / "checkpoints"))
    saved = [k for k in ckpt.get_variable_to_shape_map() if k.startswith("lecam_ema")]
    assert saved
    np.testing.assert_allclose(ckpt.get_tensor(saved[0]), ema, rtol=1e-4, atol=1e-7)


def test_d_recon_trains_d_and_its_decoder_to_redraw_the_real_images() -> None:
    """--d-recon: D's loss gets W x the decoder's pixel error on the real images, its
    gradient reaches D's own weights (else D's features are not shaped by it), and a few
    steps on that term alone make the redrawing better. Off: no decoder, no term."""
    from types import SimpleNamespace

    from trainer.loop import Trainer
    from trainer.model import VaeGan

    cfg = presets.resolve("tiny", {"d_recon": 2.0})
    m = VaeGan(cfg)
    this = SimpleNamespace(cfg=cfg, model=m, adaptive=False, batch=cfg.batch_size)
    real = images(8, 16, seed=3)
    assert len(m.d_variables) == len(m.discriminator.trainable_variables) \
        + len(m.d_decoder.trainable_variables)
    opt = tf.keras.optimizers.Adam(2e-3)
    errors = []
    for _ in range(40):
        with tf.GradientTape() as tape:
            ((lr, _, top),), _ = Trainer._discriminate(this, real, r1=False)
            out = Trainer._d_terms(this, {"loss_d": tf.constant(0.5)}, lr, [], None, (real, top))
        g = tape.gradient(out["loss_d"], m.d_variables)
        if not errors:
            np.testing.assert_allclose(float(out["loss_d"]), 0.5 + 2.0 * float(out["loss_d_recon"]),
                                       rtol=1e-5)
            first_conv = m.discriminator.trainable_variables[0]
            assert float(tf.reduce_sum(tf.abs(g[0]))) > 0, first_conv.name
        opt.apply_gradients([(d, v) for d, v in zip(g, m.d_variables) if d is not None])
        errors.append(float(out["loss_d_recon"]))
    assert errors[-1] < 0.7 * errors[0], errors
    off = VaeGan(presets.resolve("tiny", {}))
    assert off.d_decoder is None
    this = SimpleNamespace(cfg=off.cfg, model=off, adaptive=False, batch=off.cfg.batch_size)
    assert Trainer._d_terms(this, {"loss_d": lr}, lr, [], None, (real, top)) == {"loss_d": lr}
    with pytest.raises(ValueError, match="--d-recon"):
        presets.resolve("tiny", {"d_recon": -1.0})
    with pytest.raises(ValueError, match="--d-recon needs --loss gan or vaegan"):
        presets.resolve("tiny", {"d_recon": 1.0, "loss": "seed"})


@pytest.mark.parametrize("loss", ["gan", "vaegan"])
@pytest.mark.slow
def test_d_recon_runs_logs_its_error_and_resumes_its_decoder(tmp_path, tiny_dataset_dir,
                                                             loss: str) -> None:
    """The real trainer with --d-recon: every step logs the redrawing error, the decoder
    is in the checkpoint, and the same command resumes from it."""
    import json

    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    flags = ("--d-recon", "1", "--loss", loss, "--log-every", "1")
    first = run_trainer(tiny_dataset_dir, job, *flags, "--max-steps", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = tf.train.load_checkpoint(str(job / "checkpoints"))
    assert any(k.startswith("d_decoder/") for k in ckpt.get_variable_to_shape_map())
    second = run_trainer(tiny_dataset_dir, job, *flags, "--max-steps", "6")
    assert second.returncode == 0, second.stderr[-3000:]
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert all(r["loss_d_recon"] > 0 for r in rows)


def test_mbstd_channel_is_each_groups_feature_spread() -> None:
    """--mbstd's channel: images i and i + n/group share one number, their features' mean
    standard deviation; a batch the group does not divide is one group."""
    from trainer.model import MinibatchStddev

    x = tf.random.stateless_normal([8, 4, 4, 3], [3, 1])
    y = MinibatchStddev(4)(x).numpy()
    assert y.shape == (8, 4, 4, 4)
    np.testing.assert_array_equal(y[..., :3], x.numpy())
    g = x.numpy().reshape(4, 2, 4, 4, 3)
    want = np.sqrt(g.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))          # one per group
    for i in range(8):
        np.testing.assert_allclose(y[i, ..., 3], want[i % 2], rtol=1e-5)
    odd = MinibatchStddev(4)(x[:6]).numpy()[..., 3]
    np.testing.assert_allclose(odd, np.sqrt(x.numpy()[:6].var(0) + 1e-8).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="--mbstd 1"):
        presets.resolve("tiny", {"mbstd": 1})


def test_mbstd_lets_d_see_a_batch_of_copies() -> None:
    """With --mbstd, D's logit for an image depends on the other images of its group, so a
    batch of one picture repeated scores differently from the same picture among others;
    without it (and with D's batch norm in inference mode) it does not. Freshly initialised
    logits are about 1e-4, so the change is measured against the logit, from fixed weights
    (an absolute threshold failed on one draw of them)."""
    import keras

    from trainer.model import build_discriminator

    x = images(8, 16)
    copies = tf.repeat(x[:1], 8, axis=0)
    for mbstd, mix, differs in ((0, "conv", False), (2, "conv", True), (2, "dense", True)):
        keras.utils.set_random_seed(0)
        d = build_discriminator(presets.resolve("tiny", {"mbstd": mbstd, "mbstd_mix": mix}))
        mixed = float(d(x, training=False)[0].numpy()[0, 0])
        alone = float(d(copies, training=False)[0].numpy()[0, 0])
        change = abs(mixed - alone) / max(abs(mixed), 1e-12)
        assert (change > 1e-3) == differs, (mbstd, mix, mixed, alone)


def test_mbstd_mix_dense_adds_only_the_channels_logit_weights() -> None:
    """--mbstd-mix dense is the cheap form: no extra convolution, only the logit's weights
    for the 4x4 spread channel; the conv form adds a whole 3x3 convolution. A wrong name, or
    the form without --mbstd (where it would do nothing), is refused before anything is built."""
    from trainer.model import build_discriminator

    def size(**overrides: object) -> int:
        return build_discriminator(presets.resolve("tiny", overrides)).count_params()

    plain = size()
    assert size(mbstd=2, mbstd_mix="dense") == plain + 4 * 4
    assert size(mbstd=2, mbstd_mix="conv") > plain + 4 * 4 * 9
    with pytest.raises(ValueError, match="--mbstd-mix 'linear'"):
        presets.resolve("tiny", {"mbstd": 2, "mbstd_mix": "linear"})
    with pytest.raises(ValueError, match="--mbstd-mix dense needs --mbstd N"):
        presets.resolve("tiny", {"mbstd_mix": "dense"})


@pytest.mark.slow
def test_mbstd_trains_resumes_with_it_and_refuses_to_drop_it(tmp_path, tiny_dataset_dir) -> None:
    """The real trainer with --mbstd 2. A resume without the flag keeps the recorded 2; one
    that asks for --mbstd 0 or another --mbstd-mix (or drops D's batch norm) would build a D
    the checkpoint does not fit, so it stops first and names the flag to give."""
    import json

    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    first = run_trainer(tiny_dataset_dir, job, "--mbstd", "2", "--max-steps", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_trainer(tiny_dataset_dir, job, "--max-steps", "4")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((job / "config.json").read_text())["trainer"]["mbstd"] == 2
    dropped = run_trainer(tiny_dataset_dir, job, "--mbstd", "0", "--max-steps", "5")
    assert dropped.returncode != 0
    assert "use --mbstd 2" in dropped.stderr
    remixed = run_trainer(tiny_dataset_dir, job, "--mbstd-mix", "dense", "--max-steps", "5")
    assert remixed.returncode != 0
    assert "use --mbstd-mix conv" in remixed.stderr
    # A switch is named as the user types it: --d-batch-norm, not "--d-batch-norm True".
    unnormed = run_trainer(tiny_dataset_dir, job, "--no-d-batch-norm", "--max-steps", "5")
    assert unnormed.returncode != 0
    assert "use --d-batch-norm or a new job dir" in unnormed.stderr


def test_mbstd_start_fades_the_channel_in_and_is_checked() -> None:
    """--mbstd-start N: the multiplier is 0 up to step N and reaches 1 a quarter of N later;
    while it is 0, D scores an image the same whatever else is in its batch (the channel
    is there but says nothing), and once it is 1 it scores a batch of copies differently.
    A negative start, or a start without --mbstd, is refused."""
    import keras

    from trainer.model import build_discriminator, spread_fade

    got = [float(spread_fade(400, tf.constant(s, tf.int64))) for s in (0, 400, 450, 500, 10_000)]
    assert got == [0.0, 0.0, 0.5, 1.0, 1.0]
    x = images(8, 16)
    copies = tf.repeat(x[:1], 8, axis=0)
    keras.utils.set_random_seed(0)
    d = build_discriminator(presets.resolve("tiny", {"mbstd": 2, "mbstd_start": 400}))
    fade = d.get_layer("mbstd").fade
    assert fade is not None and not fade.trainable and float(fade.numpy()) == 0.0

    def change() -> float:
        mixed = float(d(x, training=False)[0].numpy()[0, 0])
        alone = float(d(copies, training=False)[0].numpy()[0, 0])
        return abs(mixed - alone) / max(abs(mixed), 1e-12)

    assert change() < 1e-6
    fade.assign(1.0)
    assert change() > 1e-3
    with pytest.raises(ValueError, match="--mbstd-start -1 must be 0"):
        presets.resolve("tiny", {"mbstd": 2, "mbstd_start": -1})
    with pytest.raises(ValueError, match="--mbstd-start 5 needs --mbstd N"):
        presets.resolve("tiny", {"mbstd_start": 5})


@pytest.mark.slow
def test_mbstd_start_is_set_by_the_loop_and_kept_on_resume(tmp_path, tiny_dataset_dir) -> None:
    """The real trainer with --mbstd 2 --mbstd-start 8: after 4 steps the checkpoint's fade
    is still 0, after 11 it is 1 (full from step 10 = 8 + 8 / 4). A resume asking for another start is refused
    and names the recorded one; a job recorded before the flag existed counts as 0 (its
    checkpoint has no fade weight), so asking it for a start is refused too."""
    import json

    from tests.fixtures.models import run_trainer

    def fade_in_checkpoint(job) -> float:
        reader = tf.train.load_checkpoint(str(job / "checkpoints"))
        keys = [k for k in reader.get_variable_to_shape_map() if "fade" in k and "OPTIMIZER" not in k]
        assert len(keys) == 1, keys
        return float(reader.get_tensor(keys[0]))

    job = tmp_path / "job"
    first = run_trainer(tiny_dataset_dir, job, "--mbstd", "2", "--mbstd-start", "8", "--max-steps", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    assert fade_in_checkpoint(job) == 0.0
    again = run_trainer(tiny_dataset_dir, job, "--max-steps", "11")
    assert again.returncode == 0, again.stderr[-3000:]
    assert fade_in_checkpoint(job) == 1.0
    moved = run_trainer(tiny_dataset_dir, job, "--mbstd-start", "0", "--max-steps", "12")
    assert moved.returncode != 0
    assert "use --mbstd-start 8" in moved.stderr

    old = tmp_path / "old"
    plain = run_trainer(tiny_dataset_dir, old, "--mbstd", "2", "--max-steps", "2")
    assert plain.returncode == 0, plain.stderr[-3000:]
    config = json.loads((old / "config.json").read_text())
    del config["trainer"]["mbstd_start"]                 # as a job from before the flag
    (old / "config.json").write_text(json.dumps(config))
    later = run_trainer(tiny_dataset_dir, old, "--mbstd-start", "8", "--max-steps", "3")
    assert later.returncode != 0
    assert "use --mbstd-start 0" in later.stderr


def test_d_scales_adds_a_logit_per_coarser_scale_that_sees_only_the_pooled_image() -> None:
    """--d-scales 2: D gives two logits per image, the second from the image average-pooled
    by 2, so a change that leaves every 2x2 block's mean alone (a +/- checkerboard) moves
    the first and not the second. The losses average over both. 1 is DCGAN's D; a scale
    below 8x8 is refused before anything is built."""
    from trainer.model import build_discriminator

    one = build_discriminator(presets.resolve("tiny", {}))
    two = build_discriminator(presets.resolve("tiny", {"d_scales": 2}))
    assert tuple(one.outputs[0].shape) == (None, 1) and tuple(two.outputs[0].shape) == (None, 2)
    x = images(4, 16, seed=5) * 0.5
    check = np.indices((16, 16)).sum(0) % 2 * 2.0 - 1.0          # +1/-1, zero mean per 2x2
    y = x + 0.3 * tf.constant(check[None, :, :, None], tf.float32)
    lx, ly = two(x, training=False)[0].numpy(), two(y, training=False)[0].numpy()
    assert np.abs(lx[:, 0] - ly[:, 0]).max() > 1e-4
    np.testing.assert_allclose(lx[:, 1], ly[:, 1], atol=1e-5)
    np.testing.assert_allclose(float(losses.d_loss(tf.constant(lx), [tf.constant(ly)])),
                               np.mean(np.logaddexp(0, -lx)) + np.mean(np.logaddexp(0, ly)),
                               rtol=1e-5)
    assert presets.resolve("quick", {"d_scales": 3}).d_scales == 3       # 32, 16 and 8
    for bad, size in ((4, 32), (3, 16), (0, 32)):
        with pytest.raises(ValueError, match=f"--d-scales {bad} is out of range"):
            presets.resolve("quick", {"d_scales": bad, "image_size": size})


@pytest.mark.slow
@pytest.mark.parametrize("flag, value, other", [("--d-scales", 2, 1), ("--d-attn", 8, 0),
                                                ("--g-mapping", 2, 0), ("--g-attn", 8, 0)])
def test_shape_flags_train_resume_and_refuse_another_value(tmp_path, tiny_dataset_dir, flag: str,
                                                             value: int, other: int) -> None:
    """The real trainer with --d-scales 2, --d-attn 8 (tiny: 16x16 images, D's first map
    is 8x8), --g-mapping 2 or --g-attn 8 records it, resumes with it (and its weights)
    unasked, exports it (the folded decoder must know every decoder layout), and stops
    before building a network its checkpoint does not fit when asked for another value."""
    import json

    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    first = run_trainer(tiny_dataset_dir, job, flag, str(value), "--max-steps", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_trainer(tiny_dataset_dir, job, "--max-steps", "4")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((job / "config.json").read_text())["trainer"][flag[2:].replace("-", "_")] == value
    assert json.loads((job / "status.json").read_text())["step"] == 4
    assert (job / "model" / "genml.json").is_file()        # written after the SavedModel
    refused = run_trainer(tiny_dataset_dir, job, flag, str(other), "--max-steps", "5")
    assert refused.returncode != 0
    assert f"use {flag} {value} or a new job dir" in refused.stderr
