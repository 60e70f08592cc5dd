"""The training loop: one fused step per batch, periodic logs, samples, evals, checkpoints.

One step runs the encoder, the decoder on the posterior sample and on a prior sample,
and the discriminator once on [real, reconstruction, prior decode]; the three networks
each get their own gradient and learning rate. The step is a tf.function run under the
distribution strategy (the default one on a single machine).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from trainer import augment, data, losses, metrics, summaries
from trainer.contract import LOSS_GAN, LOSS_SEED, LOSS_VAEGAN
from trainer.errors import InputError, is_disk_full
from trainer.jobdir import RUNNING, image_grid, log, png
from trainer.manifest import train_count
from trainer.model import VaeGan, spread_fade
from trainer.presets import Config, augment_policy
from trainer.refine import refine


MIN_GAIN = 0.01     # an evaluation is a new best only if it beats the best by 1% (noise is not progress)


def make_strategy(cluster: Any) -> tf.distribute.Strategy:
    if cluster.distributed:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


class Trainer:
    """The networks, optimizers, checkpoint and summary writer of one run, and its loop.

    Built under the strategy's scope so the same code trains on one machine or many.
    """

    def __init__(self, cfg: Config, manifest: dict[str, Any], data_dir: str,
                 dirs: dict[str, str], cluster: Any, jd: Any) -> None:
        self.cfg, self.manifest, self.data_dir, self.dirs = cfg, manifest, data_dir, dirs
        self.cluster, self.jd = cluster, jd
        self.strategy = make_strategy(cluster)
        self.last_eval: dict[str, Any] = {}
        self._floor: float | None = None
        self._eval_sets: tuple[tf.Tensor, tf.Tensor, tf.Tensor] | None = None
        keras.utils.set_random_seed(cfg.seed)
        with self.strategy.scope():
            self.model = VaeGan(cfg)
            self.opt_e = keras.optimizers.Adam(cfg.lr_e, beta_1=cfg.beta1)
            self.opt_g = keras.optimizers.Adam(cfg.lr_g, beta_1=cfg.beta1)
            self.opt_d = keras.optimizers.Adam(cfg.lr_d, beta_1=cfg.beta1)
            self.opt_e.build(self.model.encoder.trainable_variables)
            self.opt_g.build(self.model.decoder.trainable_variables)
            self.opt_d.build(self.model.d_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            # --augment-target: how often D's images are augmented, adapted every step.
            self.augment_p = tf.Variable(0.0 if cfg.augment_target else 1.0, dtype=tf.float32,
                                         trainable=False, name="augment_p")
            # --apa: the share of D's real images swapped for the generator's, adapted every step.
            self.apa_p = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="apa_p")
            # --lecam: moving averages of D's mean logit on real and on fake images.
            self.lecam_ema = tf.Variable([0.0, 0.0], dtype=tf.float32, trainable=False,
                                         name="lecam_ema")
        # Kept in the checkpoint so a resume continues the budget and the best-so-far.
        self.trained_s = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="trained_s")
        self.best_swd = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_swd")
        self.best_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_step")
        self.since_best = tf.Variable(0, dtype=tf.int64, trainable=False, name="since_best")
        self._lr_scale = 1.0        # the share of the base learning rates the last step used
        self.batch = cfg.batch_size  # the global batch the step is traced for (--batch-double)
        self.topk = False            # whether the step is traced with --g-topk (--g-topk-last)
        self.r1_on = False           # whether --r1 is on at this point of the budget (--r1-last)
        self.adaptive = bool(cfg.augment_target) and bool(augment_policy(cfg.augment))
        # augment_p and the --ema-probes copies only where they are used, so checkpoints of
        # other runs keep their shape.
        extra: dict[str, Any] = {"augment_p": self.augment_p} if self.adaptive else {}
        if cfg.lecam:
            extra["lecam_ema"] = self.lecam_ema
        if cfg.apa:
            extra["apa_p"] = self.apa_p
        if self.model.d_decoder is not None:
            extra["d_decoder"] = self.model.d_decoder
        if self.model.probes:
            extra["ema_probes"] = list(self.model.probes.values())
        self.ckpt = tf.train.Checkpoint(
            step=self.step, encoder=self.model.encoder, decoder=self.model.decoder,
            discriminator=self.model.discriminator, ema_decoder=self.model.ema_decoder,
            opt_e=self.opt_e, opt_g=self.opt_g, opt_d=self.opt_d, trained_s=self.trained_s,
            best_swd=self.best_swd, best_step=self.best_step, since_best=self.since_best,
            **extra)
        # What the export needs from the best evaluation, apart from the training state.
        self.best_ckpt = tf.train.Checkpoint(encoder=self.model.encoder,
                                             ema_decoder=self.model.ema_decoder)
        ckpt_dir = dirs["checkpoints"] if cluster.is_chief else tempfile.mkdtemp(prefix="genml-ckpt-")
        self._throwaway = None if cluster.is_chief else ckpt_dir
        self.manager = tf.train.CheckpointManager(self.ckpt, ckpt_dir,
                                                  max_to_keep=cfg.keep_checkpoints)
        self.best_manager = tf.train.CheckpointManager(
            self.best_ckpt, os.path.join(ckpt_dir, "best"), max_to_keep=1, checkpoint_name="best")
        self.writer = (tf.summary.create_file_writer(dirs["logs"]) if cluster.is_chief
                       else tf.summary.create_noop_writer())
        self.npix = float(cfg.image_size * cfg.image_size * 3)
        self.policy = augment_policy(cfg.augment)
        self.late = augment_policy(cfg.augment_late)      # resolve(): only with --augment-target
        self.fixed_z = tf.random.stateless_normal([cfg.sample_grid ** 2, cfg.embedding_size],
                                                  seed=[cfg.seed, 20170601])
        self._train_fn = self._make_train_fn()

    # --- checkpoints ------------------------------------------------------------------

    def restore(self) -> int:
        """Resume from the newest checkpoint that loads (trainer/checkpoints.py says which and
        why it passed over newer ones); returns the step to continue from."""
        from trainer import checkpoints
        try:
            used = checkpoints.restore_newest(self.ckpt, self.dirs["checkpoints"], log,
                                              set_aside=self.cluster.is_chief)
        except ValueError as exc:
            probes = (" (--ema-probes counts from a run's first step: if this job started "
                      "without it, drop it to resume, or give it to a new job)"
                      if self.model.probes else "")
            raise InputError(f"{exc}. If the job's settings changed, use the ones it was trained "
                             f"with{probes}; otherwise move {self.dirs['checkpoints']} away to "
                             f"start over") from exc
        return int(self.step.numpy()) if used else 0

    def save(self) -> None:
        try:
            saved = self.manager.save(checkpoint_number=int(self.step.numpy()))
            if self.cluster.is_chief:
                from trainer import checkpoints
                checkpoints.fsync_saved(saved)      # a power cut must not leave it half on disk
        except (OSError, tf.errors.OpError) as exc:
            if is_disk_full(exc):
                raise InputError(f"disk full while writing a checkpoint to "
                                 f"{self.dirs['checkpoints']}: free some space and run the same "
                                 f"command again to resume") from exc
            raise

    # --- the step ---------------------------------------------------------------------

    def _make_train_fn(self) -> Callable[..., dict[str, tf.Tensor]]:
        """The step, traced once with the encoder and (with --encoder-every > 1) once without."""
        cfg, m = self.cfg, self.model
        strategy = self.strategy
        scale = 1.0 / strategy.num_replicas_in_sync
        losses_of = {LOSS_GAN: self._gan_losses, LOSS_VAEGAN: self._vaegan_losses,
                     LOSS_SEED: self._seed_losses}[cfg.loss]
        fade = m.fade_weight

        def step_fn(x: tf.Tensor, step: tf.Tensor, encoder: bool, r1: bool) -> dict[str, tf.Tensor]:
            ctx = tf.distribute.get_replica_context()
            rid = tf.cast(ctx.replica_id_in_sync_group, tf.int64)
            s = tf.stack([tf.cast(cfg.seed, tf.int64), step * 1024 + rid])
            nets = [("loss_e", m.encoder.trainable_variables, self.opt_e),
                    ("loss_g", m.decoder.trainable_variables, self.opt_g),
                    ("loss_d", m.d_variables, self.opt_d)][0 if encoder else 1:]
            with tf.GradientTape(persistent=True) as tape:
                # Steps without the encoder exist only for --loss gan (presets.resolve checks).
                out = losses_of(x, s, r1) if encoder else self._gan_losses(x, s, r1, encoder=False)
                scaled = {name: out[name] * scale for name, _, _ in nets}
            for name, variables, opt in nets:
                grads = tape.gradient(scaled[name], variables)
                opt.apply_gradients(zip(grads, variables))
            del tape
            return out

        # autograph=False: the step has no data-dependent Python control flow, and converting
        # Keras' code costs seconds of tracing per process. `encoder` and `r1` (this step
        # takes the R1 penalty; None: whenever --r1 is on) are Python values, so each
        # combination is its own trace.
        @tf.function(autograph=False)
        def train_fn(iterator: Any, encoder: bool = True, r1: bool | None = None
                     ) -> dict[str, tf.Tensor]:
            r1 = bool(cfg.r1) if r1 is None else r1
            x = next(iterator)
            if fade is not None:
                fade.assign(spread_fade(cfg.mbstd_start, self.step))
            out = strategy.run(step_fn, args=(x, self.step, encoder, r1))
            out = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                   for k, v in out.items()}
            self.step.assign_add(1)
            if self.adaptive:
                self.augment_p.assign(augment.adapt(self.augment_p, out["d_real_sign"],
                                                    cfg.augment_target, self.batch,
                                                    2.0 if self.late else 1.0))
                out["augment_p"] = tf.identity(self.augment_p)
            if cfg.apa:
                if cfg.apa_late:      # resolve(): only with the adaptive augmentation
                    self.apa_p.assign(augment.adapt_late(self.apa_p, self.augment_p,
                                                         out["d_real_sign"], cfg.apa, self.batch))
                else:
                    self.apa_p.assign(augment.adapt(self.apa_p, out["d_real_sign"], cfg.apa,
                                                    self.batch))
                out["apa_p"] = tf.identity(self.apa_p)
            if cfg.lecam:      # after the step, as the reference does: the term uses the past
                self.lecam_ema.assign(0.99 * self.lecam_ema
                                      + 0.01 * tf.stack([out["d_real_mean"], out["d_fake_mean"]]))
            warmup = (1.0 + tf.cast(self.step, tf.float32)) / (10.0 + tf.cast(self.step, tf.float32))
            m.update_ema(tf.minimum(cfg.ema_decay, warmup))
            for d, probe in m.probes.items():
                m.update_ema(tf.minimum(d, warmup), probe)
            return out

        traced: Callable[..., dict[str, tf.Tensor]] = train_fn    # tf.function is untyped (Any)
        return traced

    # --- the three formulations: each returns the three nets' losses and what it logs ---

    def _noise(self, x: tf.Tensor, s: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The posterior's eps and the prior's z for one step, from the step seed."""
        n, k = tf.shape(x)[0], self.cfg.embedding_size
        return (tf.random.stateless_normal([n, k], seed=s),
                tf.random.stateless_normal([n, k], seed=s + [0, 512]))

    def _gan_losses(self, x: tf.Tensor, s: tf.Tensor, r1: bool, encoder: bool = True
                    ) -> dict[str, tf.Tensor]:
        """The default: a DCGAN-trained decoder and an encoder that learns to invert it.

        The decoder's loss is the GAN's alone (plus gamma x reconstruction when gamma > 0),
        so the samples get what a textbook DCGAN gets and nothing pulls them towards the
        blurry average a pixel loss prefers. The encoder reconstructs real images through
        the decoder (its gradient stops at the encoder), keeps a KL towards the prior, and
        recovers z from decodes of prior samples (the Gaussian likelihood of z under its
        own mean and variance): images -> embeddings lands where the decoder was trained.
        Nothing of the encoder's reaches the decoder or D, so a step without it
        (`encoder=False`, --encoder-every) is the GAN's step alone, unchanged.
        """
        cfg, m = self.cfg, self.model
        eps, zp = self._noise(x, s)
        xp = m.decoder(zp, training=True)
        xd = self._pseudo_real(x, s) if cfg.apa else x
        d_in = augment.augment(tf.concat([xd, xp], 0), self.policy, s, self._p, self.late)
        real, fake = tf.split(d_in, 2)
        ((l_real, _, top), (l_p, _, _)), grad = self._discriminate(real, fake, r1=r1)
        share = self._topk_fraction()
        loss_g = losses.g_loss([losses.top_k_rows(l_p, share)])
        loss_d = losses.d_loss(l_real, [l_p], cfg.label_smoothing)
        extra = {"g_topk_share": tf.convert_to_tensor(share)} if cfg.g_topk < 1.0 else {}
        if cfg.bcr:
            # The un-augmented images through D once more; only D's loss gets the term.
            (c_real, _, _), (c_fake, _, _) = m.discriminate(xd, tf.stop_gradient(xp))
            term = losses.consistency(l_real, c_real) + losses.consistency(l_p, c_fake)
            extra["loss_bcr"] = term
            loss_d = loss_d + cfg.bcr * term
        if not encoder:
            return self._d_terms({"loss_g": loss_g, "loss_d": loss_d, **extra}, l_real, [l_p], grad,
                                 (real, top))
        # The encoder's real-image path costs an encoder and a decoder pass each way; a
        # fraction of the batch is enough for it, and the time goes to the GAN instead.
        k = max(2, int(round(self.batch * cfg.recon_fraction)))
        xe = x[:k]
        mean, logvar = m.encoder(xe, training=True)
        xr = m.decoder(mean + tf.exp(0.5 * logvar) * eps[:k], training=True)
        # With --g-latent the decoder learns from the latent term too (its gradient reaches
        # the decoder's variables only through loss_g; the encoder's come from loss_e).
        xp_mean, xp_logvar = m.encoder(xp if cfg.g_latent else tf.stop_gradient(xp), training=True)
        kl = losses.kl_divergence(mean, logvar)
        rec_pix = losses.per_sample_mse(xe, xr)
        latent = losses.gaussian_nll(zp, xp_mean, xp_logvar)
        loss_e = rec_pix + cfg.kl_weight * kl / self.npix + cfg.latent_weight * latent
        if cfg.gamma:
            loss_g = loss_g + cfg.gamma * rec_pix
        if cfg.g_latent:
            loss_g = loss_g + cfg.g_latent * latent
        out = {"loss_kl": kl, "loss_recon": rec_pix, "loss_latent": latent,
               "loss_e": loss_e, "loss_g": loss_g, "loss_d": loss_d, **extra}
        return self._d_terms(out, l_real, [l_p], grad, (real, top))

    def _pseudo_real(self, x: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        """--apa: each real image swapped, with probability apa_p, for a decode of another
        prior sample (not this step's fakes, which D sees labelled fake). D can no longer be
        sure of every image it is told is real, so memorising the few thousand stops paying;
        nothing reaches the decoder through these (APA, Jiang et al. 2021)."""
        n = tf.shape(x)[0]
        fold = tf.random.experimental.stateless_fold_in     # apart from _noise's and augment's

        def swapped() -> tf.Tensor:
            z = tf.random.stateless_normal([n, self.cfg.embedding_size], seed=fold(s, 101))
            fake = tf.cast(tf.stop_gradient(self.model.decoder(z, training=True)), x.dtype)
            swap = tf.random.stateless_uniform([n, 1, 1, 1], seed=fold(s, 102)) < self.apa_p
            return tf.where(swap, fake, x)

        if not self.cfg.apa_late:
            return swapped()
        # --apa-late: apa_p is 0 until ADA's p reaches 1, and the decoder pass is skipped.
        return tf.cond(self.apa_p > 0.0, swapped, lambda: tf.identity(x))

    def _discriminate(self, real: tf.Tensor, *fakes: tf.Tensor, r1: bool
                      ) -> tuple[list[tuple[tf.Tensor, tf.Tensor, tf.Tensor]], tf.Tensor | None]:
        """D's outputs, and on a step that takes the R1 penalty its input gradient at the
        real images.

        The inner tape watches only the real images; the step's outer tape records the
        gradient computation, so D's update gets the penalty's second-order term.
        """
        if not r1:
            return self.model.discriminate(real, *fakes), None
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(real)
            out = self.model.discriminate(real, *fakes)
            total = tf.reduce_sum(out[0][0])       # inside the tape, or it is not recorded
        return out, tape.gradient(total, real)

    def _topk_fraction(self) -> float | tf.Tensor:
        """--g-topk's share at this step: Sinha et al.'s schedule, from every sample down by
        0.99 an epoch to the flag's fraction. Early on D's ranking is no guide; on
        `quick`'s 3,377 images it reaches 0.5 after 69 epochs (about 4 minutes here).
        Epochs are counted at the batch in use, so a --batch-double switch before the
        share has reached F moves it on early; `quick` switches long after. With
        --g-topk-last the share is 1 until that point of the budget, then what the schedule
        has reached by then (F, at `quick`'s sizes: D is trained, its ranking a guide)."""
        if not self.topk:                       # topk_for: only ever on with --g-topk below 1
            return 1.0
        n = max(1, train_count(self.manifest))
        epochs = tf.cast(self.step, tf.float32) * (self.batch / n)
        return tf.maximum(self.cfg.g_topk, tf.pow(0.99, epochs))

    @property
    def _p(self) -> tf.Variable | None:
        """The augmentation probability when it adapts; None: every image (or none)."""
        return self.augment_p if self.adaptive else None

    def _d_terms(self, out: dict[str, tf.Tensor], l_real: tf.Tensor, l_fakes: list[tf.Tensor],
                 grad: tf.Tensor | None, real_top: tuple[tf.Tensor, tf.Tensor] | None = None
                 ) -> dict[str, tf.Tensor]:
        """Adds what the discriminator's extras need: R1, LeCam and --d-recon's redrawing of
        the (augmented) real images from D's last features (`real_top`) to its loss, ADA's and
        --apa's E[sign D(real)], LeCam's mean logits (train_fn moves its averages with them)."""
        if self.adaptive or self.cfg.apa:
            out = {**out, "d_real_sign": tf.reduce_mean(tf.sign(l_real))}
        if self.cfg.lecam:
            reg = losses.lecam(l_real, l_fakes, self.lecam_ema[0], self.lecam_ema[1])
            out = {**out, "loss_lecam": reg, "loss_d": out["loss_d"] + self.cfg.lecam * reg,
                   "d_real_mean": tf.reduce_mean(l_real),
                   "d_fake_mean": tf.reduce_mean(tf.concat(l_fakes, 0))}
        if self.model.d_decoder is not None and real_top is not None:     # --d-recon
            # A quarter of the real images: the decoder's small 3x3 convolutions cost as much
            # as D's whole pass over a full batch on a CPU (measured: +20 ms against +5 ms).
            real, top = real_top
            k = max(2, self.batch // 4)
            redrawn = self.model.d_decoder(top[:k], training=True)       # at half size
            half = tf.nn.avg_pool2d(tf.stop_gradient(real[:k]), 2, 2, "VALID")
            err = losses.per_sample_mse(half, redrawn)
            out = {**out, "loss_d_recon": err, "loss_d": out["loss_d"] + self.cfg.d_recon * err}
        if grad is None:
            return out
        # Lazy R1 (--r1-every N) takes the penalty on one step in N at N times the weight,
        # so D gets the same regularisation per step on average (StyleGAN2).
        r1 = losses.r1_penalty(grad)
        weight = 0.5 * self.cfg.r1 * self.cfg.r1_every
        return {**out, "loss_r1": r1, "loss_d": out["loss_d"] + weight * r1}

    def _vaegan_losses(self, x: tf.Tensor, s: tf.Tensor, r1: bool) -> dict[str, tf.Tensor]:
        """Larsen et al.'s joint VAE-GAN: the decoder also minimises gamma x reconstruction."""
        cfg, m = self.cfg, self.model
        eps, zp = self._noise(x, s)
        mean, logvar = m.encoder(x, training=True)
        z = mean + tf.exp(0.5 * logvar) * eps
        # One decoder call on posterior AND prior samples: batch norm then sees (and its
        # moving averages record) the mix generation will meet.
        xr, xp = tf.split(m.decoder(tf.concat([z, zp], 0), training=True), 2)
        kl = losses.kl_divergence(mean, logvar)
        rec_pix = losses.per_sample_mse(x, xr)
        d_in = augment.discriminator_input(x, xr, xp, self.policy, s, self._p, self.late)
        real, rec, prior = tf.split(d_in, 3)
        ((l_real, f_real, top), (l_rec, f_rec, _), (l_p, _, _)), grad = \
            self._discriminate(real, rec, prior, r1=r1)
        rec_feat = losses.per_sample_mse(tf.stop_gradient(f_real), f_rec)
        if cfg.feature_weight:
            recon = cfg.pixel_weight * rec_pix + cfg.feature_weight * rec_feat
        else:
            # Still logged, but 0 * rec_feat would make the encoder's backward sweep run
            # through D's lower layers for nothing.
            recon = cfg.pixel_weight * rec_pix
        return self._d_terms({"loss_kl": kl, "loss_recon": rec_pix, "loss_feature": rec_feat,
                              "loss_e": recon + cfg.kl_weight * kl / self.npix,
                              "loss_g": cfg.gamma * recon + losses.g_loss([l_rec, l_p]),
                              "loss_d": losses.d_loss(l_real, [l_rec, l_p], cfg.label_smoothing)},
                             l_real, [l_rec, l_p], grad, (real, top))

    def _seed_losses(self, x: tf.Tensor, s: tf.Tensor, r1: bool) -> dict[str, tf.Tensor]:
        """The 2017 seed's formulation (a baseline): its KL, batch-summed recon and clipped logs
        (no extras: `r1` is accepted for the common signature)."""
        cfg, m = self.cfg, self.model
        eps, _ = self._noise(x, s)
        mean, logvar = m.encoder(x, training=True)
        xr = m.decoder(mean + tf.exp(0.5 * logvar) * eps, training=True)
        logits, _, _ = m.discriminator(tf.concat([x, xr], 0), training=True)
        l_real, l_rec = tf.split(logits, 2)
        recon = losses.seed_recon(x, xr) / (cfg.image_size ** 2)
        return {"loss_kl": losses.kl_divergence(mean, logvar),
                "loss_recon": losses.per_sample_mse(x, xr),
                "loss_e": losses.seed_kl(mean, logvar) / (cfg.image_size ** 2) + recon,
                "loss_g": recon + losses.seed_g_loss(l_rec),
                "loss_d": losses.seed_d_loss(l_real, l_rec)}

    def _dataset(self, start: int) -> Any:
        cfg = self.cfg

        def fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            return data.train_dataset(self.data_dir, self.manifest, cfg.image_size,
                                      self.batch, cfg.seed + start, cfg.shuffle_buffer,
                                      cfg.cache_limit_mb, ctx)

        return self.strategy.distribute_datasets_from_function(fn)

    # --- the loop ---------------------------------------------------------------------

    def clock(self) -> float:
        """Seconds on the run's clock: wall time, or CPU time divided by the cores (benchmarks).

        The CPU clock lets runs that share a busy machine be compared by the work each got.
        """
        if self.cfg.clock == "cpu":
            return time.process_time() / max(1, len(os.sched_getaffinity(0)))
        return time.perf_counter()

    def train(self, start: int, cancelled: Callable[[], bool]) -> int:
        """Train until max_steps, the time budget, a stall (if asked) or a cancel; returns the step.

        Minutes count training only (not samples, evaluations or checkpoints) and carry over
        a resume, so `--max-minutes 30` means thirty minutes of learning however it was split.
        """
        cfg = self.cfg
        step = start
        trained0 = float(self.trained_s.numpy())
        self.set_phase(step, trained0)
        it = iter(self._dataset(start))
        t_mark, n_mark = time.perf_counter(), step
        t0 = time.time()
        busy = 0.0               # seconds spent on samples/evals/checkpoints since t_mark
        ips = 0.0
        budget = cfg.max_minutes * 60.0
        every = cfg.eval_minutes * 60.0
        next_eval = (int(trained0 // every) + 1) * every if every else 0.0
        # The checkpoint holds the optimizers' last learning rates; the settings decide them.
        self.set_learning_rates(step, trained0)
        encoder_out: dict[str, tf.Tensor] = {}   # the last encoder step's losses, for the log
        r1_out: dict[str, tf.Tensor] = {}        # the last lazy R1 step's penalty, likewise
        mark = (start, trained0)                 # where the current step rate is measured from
        traced: set[tuple[bool, bool]] = set()   # which of the step's traces have run
        if step == 0 and self.cluster.is_chief:
            self.write_sample(0)
            log("first sample written")
        while step < cfg.max_steps:
            if cancelled():
                self.save()
                return step
            so_far = float(self.trained_s.numpy())      # the schedules read the budget spent
            if cfg.lr_decay:
                self.set_learning_rates(step, so_far)
            changed = self.set_phase(step, so_far)
            if changed:
                traced.clear()
            if "batch" in changed:
                it = iter(self._dataset(step))
                mark = (step, so_far)
            c0 = self.clock()
            with_encoder = step % cfg.encoder_every == 0
            with_r1 = self.set_r1(step, so_far) and step % cfg.r1_every == 0
            out = self._train_fn(it, with_encoder, with_r1)
            if with_encoder and cfg.encoder_every > 1:
                encoder_out = {k: v for k, v in out.items()
                               if k not in ("loss_g", "loss_d", "loss_r1")}
            if with_r1 and cfg.r1_every > 1:
                r1_out = {"loss_r1": out["loss_r1"]}
            out = {**encoder_out, **r1_out, **out}
            step += 1
            if (with_encoder, with_r1) in traced:     # a trace's first step is mostly tracing
                self.trained_s.assign_add(self.clock() - c0)
            traced.add((with_encoder, with_r1))
            trained = float(self.trained_s.numpy())
            if step == start + 1:
                log(f"first step done (step {step})")
                t_mark, n_mark = time.perf_counter(), step     # the rate leaves out tracing
            out_of_time = bool(budget) and trained >= budget
            last = step == cfg.max_steps or out_of_time
            if step % cfg.log_every == 0 or last:
                row = {k: float(v) for k, v in out.items()}
                if cfg.lr_decay:
                    row["lr_scale"] = self._lr_scale        # what the step just taken used
                if cfg.batch_double or cfg.batch_double_images:
                    row["batch_size"] = float(self.batch)
                now = time.perf_counter()
                if step > n_mark:
                    ips = (step - n_mark) * self.batch / max(1e-9, now - t_mark - busy)
                t_mark, n_mark, busy = now, step, 0.0
                if not all(np.isfinite(v) for v in row.values()):
                    raise FloatingPointError(f"loss is not finite at step {step}: {row}")
                self.jd.append_metrics({"kind": "train", "step": step, "wall_time": time.time(),
                                        "elapsed": time.time() - t0, "train_minutes": trained / 60,
                                        "images_per_sec": ips, **row})
                with self.writer.as_default(step=step):
                    for k, v in row.items():
                        summaries.scalar(f"train/{k}", v, step)
                    summaries.scalar("train/images_per_sec", ips, step)
                planned, left = self._planned(step, trained, *mark)
                self.jd.status(state=RUNNING, step=step, images_per_sec=round(ips, 2),
                               train_minutes=round(trained / 60, 2), max_steps=planned,
                               seconds_left=left)
                print(f"step {step}/{cfg.max_steps} {ips:.1f} img/s "
                      + " ".join(f"{k}={v:.4f}" for k, v in row.items()), flush=True)
            t_busy = time.perf_counter()
            if self.cluster.is_chief and (step % cfg.sample_every == 0 or last):
                self.write_sample(step)
            due = trained >= next_eval if every else step % cfg.eval_every == 0
            if due or last:
                if every:
                    next_eval = (trained // every + 1) * every
                if self.cluster.is_chief:
                    self.evaluate(step)
                    if self.stalled and cfg.stop_when_stalled:
                        log("stopping: stalled (--stop-when-stalled)")
                        last = True
            if step % cfg.checkpoint_every == 0 or last:
                self.save()
            busy += time.perf_counter() - t_busy
            if last:
                if out_of_time:
                    log(f"time budget of {cfg.max_minutes:g} minutes reached at step {step}")
                break
        self.writer.flush()
        if self._throwaway:
            shutil.rmtree(self._throwaway, ignore_errors=True)
        return step

    def lr_factor(self, step: int, trained: float) -> float:
        """The share of the base learning rates a step gets: 1, then over the last `lr_decay`
        of the budget down to 0."""
        return min(1.0, max(0.0, (1.0 - spent(self.cfg, step, trained)) / self.cfg.lr_decay))

    def batch_for(self, step: int, trained: float) -> int:
        """The global batch a step takes: --batch-size, twice that over the last `batch_double`
        of the budget: less gradient noise late without lowering the learning rates, which
        measured worse here (docs/trainer.md, "Twice the batch over the end of the budget").
        `batch_double_images` brings the switch forward to a count of images: where the
        batch-32 plateau starts is a matter of images seen, not of the share of the budget,
        so a fast CPU or a long budget need not wait on it."""
        cfg = self.cfg
        late = ((cfg.batch_double and in_last(cfg, step, trained, cfg.batch_double))
                or (cfg.batch_double_images and step * cfg.batch_size >= cfg.batch_double_images))
        return cfg.batch_size * (2 if late else 1)

    def topk_for(self, step: int, trained: float) -> bool:
        """Whether a step trains the generator on its top-k samples: with --g-topk below 1,
        over the last `g_topk_last` of the budget (all of it by default)."""
        cfg = self.cfg
        return cfg.g_topk < 1.0 and in_last(cfg, step, trained, cfg.g_topk_last)

    def r1_for(self, step: int, trained: float) -> bool:
        """Whether --r1 is on at a point of the budget: over its last `r1_last` (all of it by
        default). A late penalty calms a long-trained D without slowing the early steps,
        where it measured worse (docs/trainer.md, "Lazy R1 from 30 minutes")."""
        cfg = self.cfg
        return bool(cfg.r1) and in_last(cfg, step, trained, cfg.r1_last)

    def set_r1(self, step: int, trained: float) -> bool:
        """`r1_for`, saying in the log where a late penalty starts (also on a resume past it).
        No new trace: the step function is traced for both values already."""
        on = self.r1_for(step, trained)
        if on and not self.r1_on and self.cfg.r1_last < 1.0:
            log(f"R1 penalty from step {step} (--r1 {self.cfg.r1:g} --r1-last {self.cfg.r1_last:g})")
        self.r1_on = on
        return on

    def set_phase(self, step: int, trained: float) -> set[str]:
        """Move to the batch size and the top-k setting the schedules give this point of the
        budget. Either change needs a new trace of the step (its slices and ADA's rate read
        the batch; the top-k gather is there or not); a new batch also needs a new input
        pipeline, which the caller builds. Returns what changed: "batch", "topk", both, none."""
        batch, topk = self.batch_for(step, trained), self.topk_for(step, trained)
        changed = {name for name, new, old in (("batch", batch, self.batch), ("topk", topk, self.topk))
                   if new != old}
        if not changed:
            return changed
        self.batch, self.topk = batch, topk
        self._train_fn = self._make_train_fn()
        if "batch" in changed:
            log(f"batch size {batch} from step {step} ({self._batch_flags()})")
        if "topk" in changed and step:          # from the first step: --g-topk says so already
            log(f"top-k training from step {step} (--g-topk {self.cfg.g_topk:g} "
                f"--g-topk-last {self.cfg.g_topk_last:g})")
        return changed

    def _batch_flags(self) -> str:
        """The flags that schedule the batch, as the log names them."""
        cfg = self.cfg
        flags = [f"--batch-double {cfg.batch_double:g}"] if cfg.batch_double else []
        if cfg.batch_double_images:
            flags.append(f"--batch-double-images {cfg.batch_double_images}")
        return " ".join(flags)

    def set_learning_rates(self, step: int, trained: float) -> None:
        f = self._lr_scale = self.lr_factor(step, trained) if self.cfg.lr_decay else 1.0
        for opt, lr in ((self.opt_e, self.cfg.lr_e), (self.opt_g, self.cfg.lr_g),
                        (self.opt_d, self.cfg.lr_d)):
            opt.learning_rate = lr * f

    def write_sample(self, step: int) -> None:
        """A grid decoded by the EMA generator (standing statistics) from the same fixed embeddings."""
        imgs = self.model.sampler(step)(self.fixed_z, training=False)
        grid = image_grid(imgs, self.cfg.sample_grid)
        self.jd.write_sample(step, png(grid))
        with self.writer.as_default(step=step):
            summaries.image("samples", grid, step)

    def _planned(self, step: int, trained: float, since: int, trained_since: float
                 ) -> tuple[int, float | None]:
        """The step the run will end at, and the seconds of training left (None: not known yet).

        Under a time budget the end step is the one the current rate reaches it at, the rate
        measured from `since` (the start, or the last --batch-double switch, after which a
        step takes longer): what progress bars read from status.json. The seconds left are
        what an ETA should show: a rate in images/s times the preset's batch would be wrong
        whenever the batch is not the one the job's options name.
        """
        cfg = self.cfg
        if step <= since + 1 or trained <= trained_since:
            return (cfg.max_steps if not cfg.max_minutes else 0), None
        rate = (step - since - 1) / (trained - trained_since)          # steps per second
        by_steps = (cfg.max_steps - step) / rate
        if not cfg.max_minutes:
            return cfg.max_steps, round(by_steps, 1)
        left = max(0.0, cfg.max_minutes * 60.0 - trained)
        return min(cfg.max_steps, step + int(left * rate)), round(min(left, by_steps), 1)

    @property
    def stalled(self) -> bool:
        return int(self.since_best.numpy()) >= self.cfg.patience

    def evaluate(self, step: int) -> dict[str, Any]:
        """SWD of n prior decodes against real images (with its floor), PSNR/SSIM of reconstructions.

        With --eval-draws K both SWDs are the mean of K draws (other embeddings, patches
        and projections each; metrics.swd_draws), so the best and the stop rule follow the
        model rather than one draw's luck.

        Keeps the best SWD so far: a new best saves the `best` checkpoint the export uses,
        and `patience` evaluations without one mark the run as stalled.
        """
        cfg = self.cfg
        t = time.perf_counter()
        held, real_a, real_b = self.eval_data()
        n = int(real_b.shape[0])
        decoder = self.model.sampler(step)
        recon = tf.concat([decoder(self.model.encoder(b, training=False)[0], training=False)
                           for b in tf.split(held, _chunks(int(held.shape[0])))], 0)
        zs = [tf.random.stateless_normal([n, cfg.embedding_size], seed=[cfg.seed, 99 + d])
              for d in range(cfg.eval_draws)]

        def draws(sample: Callable[[int], tf.Tensor]) -> list[float]:
            return metrics.swd_draws(sample, real_b, cfg.eval_draws, cfg.seed,
                                     cfg.swd_patches, cfg.swd_projections)
        if self._floor is None:
            self._floor = float(np.mean(draws(lambda d: real_a)))
        swds = draws(lambda d: decode_prior(decoder, zs[d]))
        score = float(np.mean(swds))
        # The same embeddings through each --ema-probes copy: a same-step comparison of decays.
        probes: dict[str, float] = {}
        for d in self.model.probes:
            probe = self.model.sampler(step, probe=d)
            probes[str(d)] = float(np.mean(draws(lambda i: decode_prior(probe, zs[i]))))
            self.jd.write_probe_sample(f"ema-{d}", step,
                                       png(image_grid(probe(self.fixed_z, training=False),
                                                      cfg.sample_grid)))
        if score < float(self.best_swd.numpy()) * (1.0 - MIN_GAIN):
            self.best_swd.assign(score)
            self.best_step.assign(step)
            self.since_best.assign(0)
            self.best_manager.save(checkpoint_number=step)
        else:
            self.since_best.assign_add(1)
        best, best_step = float(self.best_swd.numpy()), int(self.best_step.numpy())
        row: dict[str, Any]        # mixed values: mypy would infer dict[str, object]
        row = {"kind": "eval", "step": step, "wall_time": time.time(),
               "train_minutes": float(self.trained_s.numpy()) / 60,
               "psnr": metrics.psnr(held, recon), "ssim": metrics.ssim(held, recon),
               "swd": score, "swd_floor": self._floor, "images": n,
               "best_step": best_step, "best_swd": best,
               "evals_since_best": int(self.since_best.numpy()), "patience": cfg.patience,
               "seconds": time.perf_counter() - t}
        if probes:
            row["probe_swd"] = probes
        if cfg.eval_draws > 1:
            row["swd_draws"] = swds
        self.jd.append_metrics(row)
        self.jd.status(best_step=best_step, best_swd=round(best, 3), stalled=self.stalled)
        with self.writer.as_default(step=step):
            for k in ("psnr", "ssim", "swd", "swd_floor", "best_swd"):
                summaries.scalar(f"eval/{k}", row[k], step)
            for name, v in probes.items():
                summaries.scalar(f"eval/swd_ema_{name}", v, step)
            cols = min(8, int(held.shape[0]))
            summaries.image("reconstructions",
                            image_grid(tf.concat([held[:cols], recon[:cols]], 0), cols), step)
        spread = f" sd {np.std(swds, ddof=1):.2f} over {len(swds)} draws" if len(swds) > 1 else ""
        print(f"eval step {step}: swd={score:.1f}{spread} (floor {self._floor:.1f}, {n} images) "
              f"psnr={row['psnr']:.2f} ssim={row['ssim']:.3f} best={best:.1f} at step {best_step} "
              f"[{row['seconds']:.0f} s]"
              + "".join(f" ema {name}: swd={v:.1f}" for name, v in probes.items()), flush=True)
        if self.stalled:
            log(f"stalled: no better SWD in {row['evals_since_best']} evaluations (best "
                f"{best:.1f} at step {best_step}); more training is unlikely to help; the "
                f"export uses step {best_step}")
        self.last_eval = row
        return row

    def eval_data(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(held-out, real A, real B), read once per run (eval_sets)."""
        if self._eval_sets is None:
            cfg = self.cfg
            self._eval_sets = eval_sets(self.data_dir, self.manifest, cfg.image_size,
                                        cfg.eval_images)
        return self._eval_sets

    def encode_scores(self, step: int) -> dict[str, float]:
        """PSNR/SSIM of held-out images through what the export's `encode` gives (the refined
        embedding) and decode, and through the encoder's mean alone (`encoder_psnr`,
        `encoder_ssim`: what each evaluation logs). 256 images at 32 px, fewer for larger
        images so that the refinement's cost stays that of 256 at 32 px (64 at 64 px)."""
        cfg = self.cfg
        held = self.eval_data()[0][:max(16, 256 * 32 * 32 // cfg.image_size ** 2)]
        decoder = self.model.sampler(step)

        @tf.function
        def encode(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            mean = self.model.encoder(x, training=False)[0]
            z = refine(lambda z: decoder(z, training=False), x, mean, cfg.refine_steps)
            return decoder(mean, training=False), decoder(z, training=False)

        t = time.perf_counter()
        plain, refined = encode(held)
        scores = {"psnr": metrics.psnr(held, refined), "ssim": metrics.ssim(held, refined),
                  "encoder_psnr": metrics.psnr(held, plain),
                  "encoder_ssim": metrics.ssim(held, plain)}
        print(f"held-out reconstructions through the export's encode ({cfg.refine_steps} "
              f"refinement steps): psnr={scores['psnr']:.2f} ssim={scores['ssim']:.3f} "
              f"(the encoder's mean alone: {scores['encoder_psnr']:.2f}, "
              f"{scores['encoder_ssim']:.3f}) [{time.perf_counter() - t:.0f} s]", flush=True)
        return scores

    def restore_best(self) -> int:
        """Load the best evaluation's encoder and EMA decoder (for the export); returns its step."""
        best = self.best_manager.latest_checkpoint
        if not best:            # e.g. removed by hand: the export is then the last step's
            return 0
        self.best_ckpt.restore(best).expect_partial()
        return int(self.best_step.numpy())


def spent(cfg: Config, step: int, trained: float) -> float:
    """The share of the budget spent: seconds of training under --max-minutes, else steps."""
    return trained / (cfg.max_minutes * 60.0) if cfg.max_minutes else step / cfg.max_steps


def in_last(cfg: Config, step: int, trained: float, share: float) -> bool:
    """Whether a point of the budget lies in its last `share`: where --batch-double,
    --g-topk-last and --r1-last switch their setting on."""
    return spent(cfg, step, trained) >= 1.0 - share


def eval_sets(data_dir: str, manifest: dict[str, Any], image_size: int,
              eval_images: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(held-out images, real set A, real set B), centre-cropped as serving crops.

    SWD compares n generated images with the n real images of B; the floor compares A
    with B, the same sizes, so a model at the floor is as close to B as other real
    images are. n = eval_images, or half the training images when there are fewer.
    """
    n = max(1, min(eval_images, train_count(manifest) // 2))
    real = data.eval_images(data_dir, manifest, "train", image_size, 2 * n, shuffle_seed=0)
    held = data.eval_images(data_dir, manifest, "validation", image_size, min(eval_images, 500))
    if int(held.shape[0]) == 0:
        print("warning: no validation images; PSNR/SSIM use training images", file=sys.stderr)
        held = real[:min(eval_images, 500)]
    n = int(real.shape[0]) // 2
    return held, real[:n], real[n:2 * n]


def decode_prior(decoder: Any, z: tf.Tensor) -> tf.Tensor:
    """Prior decodes in chunks of 256 (memory stays flat for any --eval-images)."""
    return tf.concat([decoder(b, training=False) for b in tf.split(z, _chunks(int(z.shape[0])))], 0)


def _chunks(n: int, size: int = 256) -> list[int]:
    """Split sizes of n into batches of at most `size` (the decoder's memory stays flat)."""
    return [size] * (n // size) + ([n % size] if n % size else [])


__all__ = ["Trainer", "make_strategy", "eval_sets", "decode_prior"]
