"""Looks at what a run generates: `python -m wgan_gp.sample --workdir=runs/celeba64`,
or a shipped generator, with no data and no training: `--pretrained=celeba64-cpu`.

  --mode=grid         a PNG grid of samples
  --mode=interpolate  latent interpolations between random pairs (linear and/or
                      spherical), one row per pair, as a PNG strip or an animated GIF
  --mode=export       N samples as a folder of PNGs or one .npz (uint8 NHWC, or the 2-D
                      points of a toy run), for external tools
Sample i's latent depends on (--seed, i) only. The generator's BatchNorm normalises by
its standing statistics (`wgan_gp.standing_stats`: stored with a shipped or exported
generator, computed for a run's checkpoint at its training batch size), so sample i is
the same image whatever --num and its batch-mates. `--norm_stats=batch` normalises by
the statistics of each batch of --batch_size instead, as the paper's code samples.
"""

import os
import sys

import jax
import numpy as np
from absl import app, flags

from wgan_gp import exit_codes, latents, pretrained, standing_stats, visualize
from wgan_gp.evaluators import generate_from_noise

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run to sample from.")
flags.DEFINE_string("pretrained", None, "Instead of a run: a shipped generator's name "
                    "(celeba64-cpu) or a folder written by wgan_gp.pretrained.export.")
flags.DEFINE_enum("mode", "grid", ["grid", "interpolate", "export"], "What to write.")
flags.DEFINE_integer("num", 64, "grid: images; interpolate: pairs (rows); export: samples.")
flags.DEFINE_integer("steps", 10, "interpolate: images per row, endpoints included.")
flags.DEFINE_enum("method", "slerp", ["linear", "slerp", "both"], "interpolate: linear, "
                  "spherical, or both (rows alternate: linear then spherical).")
flags.DEFINE_bool("gif", False, "interpolate: an animated GIF instead of a PNG strip.")
flags.DEFINE_enum("format", "png", ["png", "npz"], "export: PNG files or one .npz.")
flags.DEFINE_string("out", None, "Output file or folder; default under <workdir>/samples/.")
flags.DEFINE_enum("generator", "ema", ["ema", "raw"], "The EMA generator or the raw one.")
flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
flags.DEFINE_integer("seed", 0, "Seed of the latent noise.")
flags.DEFINE_integer("batch_size", 256, "Samples generated per call.")
flags.DEFINE_enum("norm_stats", "standing", ["standing", "batch"], "The generator's "
                  "BatchNorm statistics: standing (fixed; a sample depends on its latent "
                  "only) or those of each batch of --batch_size (the paper's sampling).")
flags.register_multi_flags_validator(
    ["workdir", "pretrained"], lambda f: (f["workdir"] is None) != (f["pretrained"] is None),
    message="give exactly one of --workdir (a run) and --pretrained (a shipped generator)")


def _check_flags():
  """Counts the flags' validators cannot give a one-line error for (absl's exit 1)."""
  if FLAGS.num < 1:
    raise ValueError(f"--num={FLAGS.num}: give at least 1 (images, pairs or samples)")
  if FLAGS.batch_size < 1:
    raise ValueError(f"--batch_size={FLAGS.batch_size}: give at least 1")
  if FLAGS.mode == "interpolate" and FLAGS.steps < 2:
    raise ValueError(f"--steps={FLAGS.steps}: an interpolation needs at least its 2 "
                     "endpoints")


def _load_generator():
  """(gan, generator parameters, standing statistics or None, output folder, file-name
  tag) of the flags' choice."""
  standing = FLAGS.norm_stats == "standing"
  if FLAGS.pretrained is not None:
    if FLAGS.generator != "ema" or FLAGS.step is not None:
      raise ValueError("a pretrained generator is one EMA generator: drop --generator "
                       "and --step")
    model = pretrained.load(FLAGS.pretrained, standing=standing)  # checked: its weights'
    name = os.path.basename(os.path.normpath(pretrained.resolve(FLAGS.pretrained)))
    return (model.gan, model.params, model.norm_stats, "samples",
            f"{name}_seed{FLAGS.seed}")
  from wgan_gp.runs import load_run  # orbax only when it is used (see train)
  run = load_run(FLAGS.workdir, FLAGS.step)
  params = run.state.ema_g_params if FLAGS.generator == "ema" else run.state.g_params
  stats = standing_stats.compute(run.gan, params, run.config.batch_size) if standing else None
  return (run.gan, params, stats, os.path.join(FLAGS.workdir, "samples"),
          f"step{run.step}_{FLAGS.generator}_seed{FLAGS.seed}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    _check_flags()
    gan, params, stats, samples_dir, tag = _load_generator()
  except (FileNotFoundError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(exit_codes.BAD_INPUT)
  generate = jax.jit(gan.generate)

  def _generate(z: np.ndarray) -> np.ndarray:
    """The samples of latents z, after a line on stderr saying how they are normalised."""
    size, last = min(FLAGS.batch_size, len(z)), len(z) % FLAGS.batch_size
    tail = f", the last batch of {last}" if stats is None and len(z) > size and last else ""
    print(f"BatchNorm statistics: {standing_stats.describe(gan, params, stats, size)}{tail}",
          file=sys.stderr)
    return generate_from_noise(generate, params, z, FLAGS.batch_size,
                               norm_stats=None if stats is None else stats.stats)

  is_image = len(gan.data_shape) == 3
  if FLAGS.mode != "export" and not is_image:
    print("error: this run generates 2-D points, not images: use --mode=export "
          "--format=npz (training writes the toy figures under samples/)", file=sys.stderr)
    sys.exit(exit_codes.BAD_INPUT)
  z_dim = gan.z_dim

  if FLAGS.mode == "grid":
    images = _generate(latents.noise(FLAGS.seed, FLAGS.num, z_dim))
    out = FLAGS.out or os.path.join(samples_dir, f"grid_{tag}.png")
    visualize.save_png(visualize.image_grid(images), out)

  elif FLAGS.mode == "interpolate":
    z0, z1 = latents.endpoint_pairs(FLAGS.seed, FLAGS.num, z_dim)
    methods = ["linear", "slerp"] if FLAGS.method == "both" else [FLAGS.method]
    path = np.stack([latents.interpolation_latents(z0, z1, FLAGS.steps, m) for m in methods],
                    axis=1)
    images = _generate(path.reshape(-1, z_dim).astype(np.float32))  # pair-major, method-minor
    rows = images.reshape(-1, FLAGS.steps, *images.shape[1:])
    suffix = "gif" if FLAGS.gif else "png"
    out = FLAGS.out or os.path.join(samples_dir, f"interpolation_{FLAGS.method}_{tag}.{suffix}")
    if FLAGS.gif:  # frame k: the k-th image of every row, tiled
      frames = [visualize.image_grid(rows[:, k]) for k in range(FLAGS.steps)]
      frames += frames[-2:0:-1]  # there and back
      visualize.save_gif(frames, out)
    else:
      visualize.save_png(visualize.image_grid(rows.reshape(-1, *images.shape[1:]),
                                              columns=FLAGS.steps), out)

  else:
    samples = _generate(latents.noise(FLAGS.seed, FLAGS.num, z_dim))
    if FLAGS.format == "npz":
      out = FLAGS.out or os.path.join(samples_dir, f"samples_{tag}.npz")
      os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
      np.savez(out, samples=visualize.to_uint8(samples) if is_image else samples)
    else:
      if not is_image:
        print("error: 2-D points cannot be PNGs: use --format=npz", file=sys.stderr)
        sys.exit(exit_codes.BAD_INPUT)
      out = FLAGS.out or os.path.join(samples_dir, f"export_{tag}")
      for i, image in enumerate(visualize.to_uint8(samples)):
        visualize.save_png(image, os.path.join(out, f"{i:06d}.png"))
  print(out)


if __name__ == "__main__":
  app.run(main)
