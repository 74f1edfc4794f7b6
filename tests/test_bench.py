"""`tfc-sth bench`: coding times, memory and training throughput."""

import json

import pytest

from tfc_sth import cli


def test_bench_command(tiny_model_dir, tmp_path, smooth_image, png_bytes,
                       capsys, reuse_saved_models):
  photo = tmp_path / "photo.png"
  photo.write_bytes(png_bytes(smooth_image(64, 80, seed=3)))
  out = tmp_path / "bench.json"
  assert cli.main([
      "tfc-sth", "bench", "--model", str(tiny_model_dir), "--runs=3",
      "--train_steps=2", "--train_num_filters=8",
      "--train_latent_channels=12", "--train_patch_size=64",
      "--train_batch_size=1", "-o", str(out), str(photo)]) == 0
  report = json.loads(out.read_text())
  (coding,) = report["coding"]
  assert (coding["width"], coding["height"]) == (80, 64)
  for kind in ("encode", "decode"):
    spread = coding[kind]
    assert spread["runs"] == 3
    assert spread["min_seconds"] <= spread["median_seconds"] <= (
        spread["max_seconds"])
    assert spread["megapixels_per_second"] == pytest.approx(
        80 * 64 / 1e6 / spread["median_seconds"])
  assert coding["peak_mb"] >= coding["resident_mb"] > 0
  training = report["training"]
  assert training["config"]["num_filters"] == 8
  for phase in ("soft", "hard"):
    assert training[phase]["runs"] == 2
    assert training[phase]["megapixels_per_second"] == pytest.approx(
        64 * 64 / 1e6 / training[phase]["median_seconds"])
  printed = capsys.readouterr().out
  assert "encode" in printed and "soft" in printed


def test_bench_times_refined_encoding(tiny_model_dir, tmp_path, smooth_image,
                                      png_bytes, capsys, reuse_saved_models):
  photo = tmp_path / "photo.png"
  photo.write_bytes(png_bytes(smooth_image(64, 80, seed=3)))
  out = tmp_path / "bench.json"
  assert cli.main([
      "tfc-sth", "bench", "--model", str(tiny_model_dir), "--runs=1",
      "--train_steps=0", "--refine_steps=3", "-o", str(out),
      str(photo)]) == 0
  (coding,) = json.loads(out.read_text())["coding"]
  assert coding["refine_steps"] == 3
  assert "3 refine steps" in capsys.readouterr().out


def test_bench_needs_something_to_time(capsys):
  assert cli.main(["tfc-sth", "bench", "--train_steps=0"]) == cli.EXIT_USAGE
  assert "nothing to time" in capsys.readouterr().err


_FAKE_PEER = """import sys
print("noise on stdout first")
print(f"fake peer {sys.argv[1]} enc 0.500 dec 2.000")
"""


def test_bench_reports_speed_as_ratios_to_peers_timed_in_the_same_run(
    tiny_model_dir, tmp_path, smooth_image, png_bytes, capsys,
    reuse_saved_models):
  photo = tmp_path / "photo.png"
  photo.write_bytes(png_bytes(smooth_image(64, 80, seed=3)))
  peers = tmp_path / "peers"
  peers.mkdir()
  (peers / "peer_speed.py").write_text(_FAKE_PEER)
  out = tmp_path / "bench.json"
  assert cli.main([
      "tfc-sth", "bench", "--model", str(tiny_model_dir), "--runs=2",
      "--train_steps=0", f"--peers={peers}",
      f"--compressai_python={tmp_path / 'none'}", "-o", str(out),
      str(photo)]) == 0
  report = json.loads(out.read_text())
  (coding,), (peer,) = report["coding"], report["peers"]
  assert [p["label"] for p in peer["peers"]] == ["fake peer tfcref"]
  (ratio,) = peer["ratios"]
  assert ratio["encode"] == pytest.approx(
      0.5 / coding["encode"]["median_seconds"])
  assert ratio["decode"] == pytest.approx(
      2.0 / coding["decode"]["median_seconds"])
  printed = capsys.readouterr().out
  assert "skipping CompressAI" in printed
  assert f"encode {ratio['encode']:.2f}x" in printed


_FAKE_REFERENCE_MODEL = """import time
import tensorflow as tf

class BMSHJ2018Model(tf.keras.Model):
  def __init__(self, lmbda, num_filters, num_scales, scale_min, scale_max):
    super().__init__()
    self.arguments = (lmbda, num_filters, num_scales, scale_min, scale_max)

  def train_step(self, x):
    tf.py_function(lambda: time.sleep(0.05), [], [])
    return {}
"""


def test_bench_times_the_reference_training_step_in_the_same_run(
    tmp_path, capsys):
  peers = tmp_path / "peers"
  peers.mkdir()
  (peers / "tfc_bmshj2018.py").write_text(_FAKE_REFERENCE_MODEL)
  out = tmp_path / "bench.json"
  assert cli.main([
      "tfc-sth", "bench", "--train_steps=2", "--train_num_filters=8",
      "--train_latent_channels=12", "--train_patch_size=64",
      "--train_batch_size=1", f"--peers={peers}", "-o", str(out)]) == 0
  training = json.loads(out.read_text())["training"]
  assert training["peer"]["runs"] == 2
  assert training["peer"]["median_seconds"] >= 0.05
  for phase in ("soft", "hard"):
    assert training[phase]["peer_ratio"] == pytest.approx(
        training["peer"]["median_seconds"]
        / training[phase]["median_seconds"])
  assert "tfc-reference bmshj2018" in capsys.readouterr().out


def test_bench_times_a_folder_in_one_command_and_a_command_per_image(
    tiny_model_dir, tmp_path, smooth_image, png_bytes, capsys,
    reuse_saved_models):
  photos = []
  for seed in range(2):
    photos.append(tmp_path / f"photo{seed}.png")
    photos[-1].write_bytes(png_bytes(smooth_image(64, 80, seed=seed)))
  out = tmp_path / "bench.json"
  assert cli.main([
      "tfc-sth", "bench", "--model", str(tiny_model_dir), "--runs=1",
      "--train_steps=0", "--folder", "-o", str(out),
      *map(str, photos)]) == 0
  folder = json.loads(out.read_text())["folder"]
  for command in ("compress", "decompress"):
    ways = folder[command]
    for way in ("one command", "a command per image"):
      assert ways[way]["images_per_second"] == pytest.approx(
          2 / ways[way]["seconds"])
    assert ways["speed-up"] == pytest.approx(
        ways["a command per image"]["seconds"]
        / ways["one command"]["seconds"])
  assert "images/s" in capsys.readouterr().out
