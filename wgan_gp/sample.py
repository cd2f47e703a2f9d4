"""Looks at what a run generates: `python -m wgan_gp.sample --workdir=runs/celeba64`,
or a shipped generator, with no data and no training: `--pretrained=celeba64-cpu`.

  --mode=grid         a PNG grid of samples
  --mode=interpolate  latent interpolations between random pairs (linear and/or
                      spherical), one row per pair, as a PNG strip or an animated GIF
  --mode=export       N samples as a folder of PNGs or one .npz (uint8 NHWC, or the 2-D
                      points of a toy run), for external tools
The same --seed gives the same images.
"""

import os
import sys

import jax
import numpy as np
from absl import app, flags

from wgan_gp import exit_codes, pretrained, visualize
from wgan_gp.evaluators import generate_from_noise
from wgan_gp.latents import interpolation_latents

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
flags.register_multi_flags_validator(
    ["workdir", "pretrained"], lambda f: (f["workdir"] is None) != (f["pretrained"] is None),
    message="give exactly one of --workdir (a run) and --pretrained (a shipped generator)")


def _generate(gan, params, z: np.ndarray, batch_size: int) -> np.ndarray:
  return generate_from_noise(jax.jit(gan.generate), params, z, batch_size)


def _load_generator():
  """(gan, generator parameters, output folder, file-name tag) of the flags' choice."""
  if FLAGS.pretrained is not None:
    if FLAGS.generator != "ema" or FLAGS.step is not None:
      raise ValueError("a pretrained generator is one EMA generator: drop --generator "
                       "and --step")
    model = pretrained.load(FLAGS.pretrained)
    name = os.path.basename(os.path.normpath(pretrained.resolve(FLAGS.pretrained)))
    return model.gan, model.params, "samples", f"{name}_seed{FLAGS.seed}"
  from wgan_gp.runs import load_run  # orbax only when it is used (see train)
  run = load_run(FLAGS.workdir, FLAGS.step)
  params = run.state.ema_g_params if FLAGS.generator == "ema" else run.state.g_params
  return (run.gan, params, os.path.join(FLAGS.workdir, "samples"),
          f"step{run.step}_{FLAGS.generator}_seed{FLAGS.seed}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    gan, params, samples_dir, tag = _load_generator()
  except (FileNotFoundError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(exit_codes.BAD_INPUT)
  is_image = len(gan.data_shape) == 3
  if FLAGS.mode != "export" and not is_image:
    print("error: this run generates 2-D points, not images: use --mode=export "
          "--format=npz (training writes the toy figures under samples/)", file=sys.stderr)
    sys.exit(exit_codes.BAD_INPUT)
  rng = np.random.default_rng(FLAGS.seed)
  z_dim = gan.z_dim

  if FLAGS.mode == "grid":
    images = _generate(gan, params, rng.standard_normal((FLAGS.num, z_dim), np.float32),
                       FLAGS.batch_size)
    out = FLAGS.out or os.path.join(samples_dir, f"grid_{tag}.png")
    visualize.save_png(visualize.image_grid(images), out)

  elif FLAGS.mode == "interpolate":
    z0, z1 = rng.standard_normal((2, FLAGS.num, z_dim), np.float32)
    methods = ["linear", "slerp"] if FLAGS.method == "both" else [FLAGS.method]
    latents = np.stack([interpolation_latents(z0, z1, FLAGS.steps, m) for m in methods], axis=1)
    latents = latents.reshape(-1, z_dim).astype(np.float32)  # rows: pair-major, method-minor
    images = _generate(gan, params, latents, FLAGS.batch_size)
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
    samples = _generate(gan, params, rng.standard_normal((FLAGS.num, z_dim), np.float32),
                        FLAGS.batch_size)
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
