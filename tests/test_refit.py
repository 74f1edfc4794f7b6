"""tools/refit_hyper_kernel.py: h_s's last layer refitted as a 1x1 layer."""

import glob

import numpy as np

from tfc_sth import export


def test_refit_copies_every_weight_and_fits_the_last_layer_of_h_s(
    tiny_ladder_dir, train_glob, tmp_path, capsys, tool):
  refitting = tool("refit_hyper_kernel")
  target = tmp_path / "refit"
  refitting.main(str(tiny_ladder_dir), str(target), train_glob)
  assert "of the variance unexplained" in capsys.readouterr().out
  source = export.exported_model(str(tiny_ladder_dir))
  refit = export.exported_model(str(target))
  assert refit.get_config()["hyper_kernel"] == 1
  head = refit.latent_codec.hyper_synthesis.layers[-1]
  assert tuple(head.kernel.shape[:2]) == (1, 1)
  fitted = {id(head.kernel_parameter), id(head.bias_parameter)}
  for old, new in zip(source.weights, refit.weights, strict=True):
    if id(new) not in fitted:
      # The export rounds h_s's kernels again (`exact.snap_kernel`), to
      # the grid they are already on.
      np.testing.assert_array_equal(old.numpy(), new.numpy(), old.name)
  # The least-squares fit: as good as the optimum computed another way
  # (from the design matrix rather than the normal equations), up to the
  # export's rounding of the kernel to 15 significant bits.
  paths = sorted(glob.glob(train_glob))
  inputs, outputs = (np.concatenate(parts) for parts in zip(
      *(refitting.last_layer_io(source, path) for path in paths)))
  error = np.sum((outputs - head(inputs[None, None])[0, 0].numpy()) ** 2)
  design = np.concatenate([inputs, np.ones_like(inputs[:, :1])], axis=1)
  fit, *_ = np.linalg.lstsq(design.astype(np.float64), outputs, rcond=None)
  optimum = np.sum((outputs - design @ fit) ** 2)
  last = source.latent_codec.hyper_synthesis.layers[-1]
  centre = np.sum((outputs - inputs @ last.kernel.numpy()[1, 1]
                   - last.bias.numpy()) ** 2)
  assert error <= 1.001 * optimum
  # And better than the 3x3 kernel's centre tap with its own bias.
  assert error < centre
