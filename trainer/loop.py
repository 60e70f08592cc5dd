"""The training loop: one fused step per batch, periodic logs, samples, evals, checkpoints.

One step runs the encoder, the decoder on the posterior sample and on a prior sample,
and the discriminator once on [real, reconstruction, prior decode]; the three networks
each get their own gradient and learning rate. The step is a tf.function run under the
distribution strategy (the default one on a single machine).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from trainer import augment, data, losses, metrics, summaries
from trainer.errors import InputError
from trainer.jobdir import RUNNING, image_grid, log, png
from trainer.model import VaeGan
from trainer.presets import Config, augment_policy


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
        self._eval_sets: tuple[tf.Tensor, tf.Tensor] | None = None
        keras.utils.set_random_seed(cfg.seed)
        with self.strategy.scope():
            self.model = VaeGan(cfg)
            self.opt_e = keras.optimizers.Adam(cfg.lr_e, beta_1=cfg.beta1)
            self.opt_g = keras.optimizers.Adam(cfg.lr_g, beta_1=cfg.beta1)
            self.opt_d = keras.optimizers.Adam(cfg.lr_d, beta_1=cfg.beta1)
            self.opt_e.build(self.model.encoder.trainable_variables)
            self.opt_g.build(self.model.decoder.trainable_variables)
            self.opt_d.build(self.model.discriminator.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.ckpt = tf.train.Checkpoint(
            step=self.step, encoder=self.model.encoder, decoder=self.model.decoder,
            discriminator=self.model.discriminator, ema_decoder=self.model.ema_decoder,
            opt_e=self.opt_e, opt_g=self.opt_g, opt_d=self.opt_d)
        ckpt_dir = dirs["checkpoints"] if cluster.is_chief else tempfile.mkdtemp(prefix="genml-ckpt-")
        self._throwaway = None if cluster.is_chief else ckpt_dir
        self.manager = tf.train.CheckpointManager(self.ckpt, ckpt_dir,
                                                  max_to_keep=cfg.keep_checkpoints)
        self.writer = (tf.summary.create_file_writer(dirs["logs"]) if cluster.is_chief
                       else tf.summary.create_noop_writer())
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
            raise InputError(f"{exc}. If the job's settings changed, use the ones it was trained "
                             f"with; otherwise move {self.dirs['checkpoints']} away to start over") from exc
        return int(self.step.numpy()) if used else 0

    def save(self) -> None:
        try:
            saved = self.manager.save(checkpoint_number=int(self.step.numpy()))
            if self.cluster.is_chief:
                from trainer import checkpoints
                checkpoints.fsync_saved(saved)      # a power cut must not leave it half on disk
        except (OSError, tf.errors.OpError) as exc:
            text = str(exc)
            if any(s in text for s in ("No space", "File too large", "quota", "ENOSPC")) or \
                    isinstance(exc, tf.errors.ResourceExhaustedError):
                raise InputError(f"disk full while writing a checkpoint to "
                                 f"{self.dirs['checkpoints']}: free some space and run the same "
                                 f"command again to resume") from exc
            raise

    # --- the step ---------------------------------------------------------------------

    def _make_train_fn(self) -> Callable[..., dict[str, tf.Tensor]]:
        cfg, m = self.cfg, self.model
        npix = float(cfg.image_size * cfg.image_size * 3)
        strategy = self.strategy
        scale = 1.0 / strategy.num_replicas_in_sync
        policy = augment_policy(cfg.augment)

        def step_fn(x: tf.Tensor, step: tf.Tensor) -> dict[str, tf.Tensor]:
            ctx = tf.distribute.get_replica_context()
            rid = tf.cast(ctx.replica_id_in_sync_group, tf.int64)
            s = tf.stack([tf.cast(cfg.seed, tf.int64), step * 1024 + rid])
            n = tf.shape(x)[0]
            eps = tf.random.stateless_normal([n, cfg.embedding_size], seed=s)
            zp = tf.random.stateless_normal([n, cfg.embedding_size], seed=s + [0, 512])
            with tf.GradientTape(persistent=True) as tape:
                mean, logvar = m.encoder(x, training=True)
                z = mean + tf.exp(0.5 * logvar) * eps
                if cfg.loss == "seed":
                    xr = m.decoder(z, training=True)
                else:
                    # One decoder call on posterior AND prior samples: batch norm then sees
                    # (and its moving averages record) the mix generation will meet.
                    xr, xp = tf.split(m.decoder(tf.concat([z, zp], 0), training=True), 2)
                kl = losses.kl_divergence(mean, logvar)
                rec_pix = losses.per_sample_mse(x, xr)
                if cfg.loss == "seed":
                    logits, _ = m.discriminator(tf.concat([x, xr], 0), training=True)
                    l_real, l_rec = tf.split(logits, 2)
                    recon = losses.seed_recon(x, xr) / (cfg.image_size ** 2)
                    loss_e = losses.seed_kl(mean, logvar) / (cfg.image_size ** 2) + recon
                    loss_g = recon + losses.seed_g_loss(l_rec)
                    loss_d = losses.seed_d_loss(l_real, l_rec)
                    rec_feat = tf.constant(0.0)
                else:
                    d_in = augment.discriminator_input(x, xr, xp, policy, s)
                    (l_real, f_real), (l_rec, f_rec), (l_p, _) = m.discriminate(*tf.split(d_in, 3))
                    rec_feat = losses.per_sample_mse(tf.stop_gradient(f_real), f_rec)
                    if cfg.feature_weight:
                        recon = cfg.pixel_weight * rec_pix + cfg.feature_weight * rec_feat
                    else:
                        # Still logged, but 0 * rec_feat would make the encoder's backward
                        # sweep run through D's lower layers for nothing.
                        recon = cfg.pixel_weight * rec_pix
                    loss_e = recon + cfg.kl_weight * kl / npix
                    loss_g = cfg.gamma * recon + losses.g_loss([l_rec, l_p])
                    loss_d = losses.d_loss(l_real, [l_rec, l_p], cfg.label_smoothing)
                scaled = [loss_e * scale, loss_g * scale, loss_d * scale]
            for loss, net, opt in zip(scaled, (m.encoder, m.decoder, m.discriminator),
                                      (self.opt_e, self.opt_g, self.opt_d)):
                grads = tape.gradient(loss, net.trainable_variables)
                opt.apply_gradients(zip(grads, net.trainable_variables))
            del tape
            return {"loss_kl": kl, "loss_recon": rec_pix, "loss_feature": rec_feat,
                    "loss_e": loss_e, "loss_g": loss_g, "loss_d": loss_d}

        # autograph=False: the step has no data-dependent Python control flow, and converting
        # Keras' code costs seconds of tracing per process.
        @tf.function(autograph=False)
        def train_fn(iterator: Any) -> dict[str, tf.Tensor]:
            x = next(iterator)
            out = strategy.run(step_fn, args=(x, self.step))
            out = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                   for k, v in out.items()}
            self.step.assign_add(1)
            decay = tf.minimum(cfg.ema_decay, (1.0 + tf.cast(self.step, tf.float32))
                               / (10.0 + tf.cast(self.step, tf.float32)))
            m.update_ema(decay)
            return out

        return train_fn

    def _dataset(self, start: int) -> Any:
        cfg = self.cfg

        def fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            return data.train_dataset(self.data_dir, self.manifest, cfg.image_size,
                                      cfg.batch_size, cfg.seed + start, cfg.shuffle_buffer,
                                      cfg.cache_limit_mb, ctx)

        return self.strategy.distribute_datasets_from_function(fn)

    # --- the loop ---------------------------------------------------------------------

    def train(self, start: int, cancelled: Callable[[], bool]) -> None:
        cfg = self.cfg
        it = iter(self._dataset(start))
        step = start
        t_mark, n_mark = time.perf_counter(), step
        t0 = time.time()
        busy = 0.0               # seconds spent on samples/evals/checkpoints since t_mark
        ips = 0.0
        if step == 0 and self.cluster.is_chief:
            self.write_sample(0)
            log("first sample written")
        while step < cfg.max_steps:
            if cancelled():
                self.save()
                return
            out = self._train_fn(it)
            step += 1
            if step == start + 1:
                log(f"first step done (step {step})")
                t_mark, n_mark = time.perf_counter(), step     # the rate leaves out tracing
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                row = {k: float(v) for k, v in out.items()}
                now = time.perf_counter()
                if step > n_mark:
                    ips = (step - n_mark) * cfg.batch_size / max(1e-9, now - t_mark - busy)
                t_mark, n_mark, busy = now, step, 0.0
                if not all(np.isfinite(v) for v in row.values()):
                    raise FloatingPointError(f"loss is not finite at step {step}: {row}")
                self.jd.append_metrics({"kind": "train", "step": step, "wall_time": time.time(),
                                        "elapsed": time.time() - t0, "images_per_sec": ips, **row})
                with self.writer.as_default(step=step):
                    for k, v in row.items():
                        summaries.scalar(f"train/{k}", v, step)
                    summaries.scalar("train/images_per_sec", ips, step)
                self.jd.status(state=RUNNING, step=step, images_per_sec=round(ips, 2))
                print(f"step {step}/{cfg.max_steps} {ips:.1f} img/s "
                      + " ".join(f"{k}={v:.4f}" for k, v in row.items()), flush=True)
            t_busy = time.perf_counter()
            if self.cluster.is_chief and (step % cfg.sample_every == 0 or step == cfg.max_steps):
                self.write_sample(step)
            if self.cluster.is_chief and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                self.evaluate(step)
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                self.save()
            busy += time.perf_counter() - t_busy
        self.writer.flush()
        if self._throwaway:
            shutil.rmtree(self._throwaway, ignore_errors=True)

    def write_sample(self, step: int) -> None:
        """A grid decoded by the EMA generator (standing statistics) from the same fixed embeddings."""
        imgs = self.model.sampler(step)(self.fixed_z, training=False)
        grid = image_grid(imgs, self.cfg.sample_grid)
        self.jd.write_sample(step, png(grid))
        with self.writer.as_default(step=step):
            summaries.image("samples", grid, step)

    def evaluate(self, step: int) -> dict[str, Any]:
        cfg = self.cfg
        if self._eval_sets is None:          # read once: the same images at every evaluation
            held = data.eval_images(self.data_dir, self.manifest, "validation", cfg.image_size,
                                    cfg.eval_images)
            train = data.eval_images(self.data_dir, self.manifest, "train", cfg.image_size,
                                     cfg.eval_images)
            if int(held.shape[0]) == 0:
                print("warning: no validation images; evaluating on training images",
                      file=sys.stderr)
                held = train
            self._eval_sets = (held, train)
        held, train = self._eval_sets
        n = int(held.shape[0])
        mean, _ = self.model.encoder(held, training=False)
        decoder = self.model.sampler(step)
        recon = decoder(mean, training=False)
        z = tf.random.stateless_normal([n, cfg.embedding_size], seed=[cfg.seed, 99])
        fake = decoder(z, training=False)
        kw = dict(patches=cfg.swd_patches, projections=cfg.swd_projections, seed=cfg.seed)
        if self._floor is None:
            self._floor = metrics.swd(train, held, **kw)
        row = {"kind": "eval", "step": step, "wall_time": time.time(),
               "psnr": metrics.psnr(held, recon), "ssim": metrics.ssim(held, recon),
               "swd": metrics.swd(fake, held, **kw), "swd_floor": self._floor}
        self.jd.append_metrics(row)
        with self.writer.as_default(step=step):
            for k in ("psnr", "ssim", "swd", "swd_floor"):
                summaries.scalar(f"eval/{k}", row[k], step)
            cols = min(8, n)
            summaries.image("reconstructions",
                            image_grid(tf.concat([held[:cols], recon[:cols]], 0), cols), step)
        log("evaluated")
        print(f"eval step {step}: psnr={row['psnr']:.2f} ssim={row['ssim']:.3f} "
              f"swd={row['swd']:.1f} (floor {row['swd_floor']:.1f})", flush=True)
        self.last_eval = row
        return row


__all__ = ["Trainer", "make_strategy"]
