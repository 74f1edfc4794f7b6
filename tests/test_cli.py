"""The `tfc-sth` command line, in process (main) and as a script (bin/tfc-sth)."""

import dataclasses
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from tfc_sth.runtime import bitstream
from tfc_sth import cli
from tfc_sth.runtime import codec
from tfc_sth.runtime import image_io
from tfc_sth.tools import metrics

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "bin", "tfc-sth")
SAMPLE = os.path.join(REPO_ROOT, "samples", "avenches.png")


def tfc_sth(*args):
  """Runs `tfc-sth ARGS...` in process; returns the exit code."""
  return cli.main(["tfc-sth"] + [str(a) for a in args])


def _stderr_lines(capsys):
  return capsys.readouterr().err.splitlines()


def _assert_one_error_line(err):
  lines = err.splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith("tfc-sth"), err
  assert "error" in lines[0]
  assert "Traceback" not in err
  return lines[0]


def _listing(directory):
  return sorted(os.listdir(directory))


@pytest.fixture(autouse=True)
def _fast_model_loading(reuse_saved_models):
  """Each CLI call loads its model; share the loaded SavedModel (see conftest)."""
  del reuse_saved_models


@pytest.fixture
def photo(tmp_path, smooth_image, png_bytes):
  """A 40x56 RGB PNG in tmp_path; returns (path, uint8 array)."""
  image = smooth_image(40, 56, seed=1)
  path = tmp_path / "photo.png"
  path.write_bytes(png_bytes(image))
  return path, image


@pytest.fixture
def compressed(photo, tiny_model_dir, tmp_path):
  """photo.png compressed to photo.tsth with the tiny model; returns its path."""
  path = tmp_path / "photo.tsth"
  assert tfc_sth("compress", photo[0], "-o", path,
                 "--model", tiny_model_dir) == 0
  return path


# Happy paths.

def test_compress_decompress_with_output(photo, tmp_path, models_env,
                                         tiny_codec, read_png_array, capsys):
  png, image = photo
  assert tfc_sth("compress", png, "-o", tmp_path / "x.tsth",
                 "--model", models_env) == 0
  assert tfc_sth("decompress", tmp_path / "x.tsth", "-o",
                 tmp_path / "y.png", "--precision=float32") == 0
  out = capsys.readouterr()
  assert out.err == "" and out.out == ""
  data = (tmp_path / "x.tsth").read_bytes()
  header, _ = bitstream.read_header(data)
  assert (header.model_id, header.height, header.width, header.channels,
          header.quality) == (tiny_codec.model_id, 40, 56, 3, 1.)
  decoded = read_png_array(tmp_path / "y.png")
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  # The CLI writes what the codec decodes.
  np.testing.assert_array_equal(decoded, tiny_codec.decompress(data)[0])
  assert _listing(tmp_path) == ["photo.png", "x.tsth", "y.png"]


def test_decompress_with_model_flag(compressed, tiny_model_dir, tmp_path,
                                    monkeypatch, read_png_array):
  monkeypatch.delenv("TFC_STH_MODELS", raising=False)
  assert tfc_sth("decompress", compressed, "-o", tmp_path / "y.png",
                 "--model", tiny_model_dir) == 0
  assert read_png_array(tmp_path / "y.png").shape == (40, 56, 3)


def test_several_inputs_to_directory(tmp_path, smooth_image, png_bytes,
                                     models_env, read_png_array, capsys):
  shapes = {"a.png": (16, 24), "b.png": (33, 17), "c.png": (64, 64)}
  for i, (name, shape) in enumerate(shapes.items()):
    (tmp_path / name).write_bytes(png_bytes(smooth_image(*shape, seed=i)))
  (tmp_path / "coded").mkdir()
  (tmp_path / "decoded").mkdir()
  inputs = [tmp_path / name for name in shapes]
  assert tfc_sth("compress", "--model", models_env, "-o", tmp_path / "coded",
                 *inputs) == 0
  assert _listing(tmp_path / "coded") == [
      "a.png.tsth", "b.png.tsth", "c.png.tsth"]
  coded = [tmp_path / "coded" / (name + ".tsth") for name in shapes]
  assert tfc_sth("decompress", *coded, "-o", tmp_path / "decoded") == 0
  assert _listing(tmp_path / "decoded") == [
      "a.png.tsth.png", "b.png.tsth.png", "c.png.tsth.png"]
  for name, (h, w) in shapes.items():
    decoded = read_png_array(tmp_path / "decoded" / (name + ".tsth.png"))
    assert decoded.shape == (h, w, 3)
  assert capsys.readouterr().err == ""


def test_default_output_names(photo, tmp_path, models_env, read_png_array):
  png, _ = photo
  assert tfc_sth("compress", png, "--model", models_env) == 0
  assert (tmp_path / "photo.png.tsth").read_bytes().startswith(b"TSTH")
  assert tfc_sth("decompress", tmp_path / "photo.png.tsth") == 0
  assert read_png_array(tmp_path / "photo.png.tsth.png").shape == (40, 56, 3)
  assert _listing(tmp_path) == [
      "photo.png", "photo.png.tsth", "photo.png.tsth.png"]


def test_default_output_names_relative(photo, tmp_path, models_env,
                                       monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert tfc_sth("compress", "photo.png", "--model", models_env) == 0
  assert tfc_sth("decompress", "photo.png.tsth") == 0
  assert _listing(tmp_path) == [
      "photo.png", "photo.png.tsth", "photo.png.tsth.png"]


@pytest.mark.parametrize("flag", ["--verbose", "-v"])
def test_verbose_prints_bpp_and_psnr(photo, tmp_path, models_env,
                                     read_png_array, capsys, flag):
  png, image = photo
  out = tmp_path / "x.tsth"
  assert tfc_sth("compress", flag, png, "-o", out, "--model", models_env) == 0
  stdout = capsys.readouterr().out
  size = out.stat().st_size
  match = re.search(r"(\d+) bytes, (\d+\.\d+) bpp, PSNR (\d+\.\d+) dB", stdout)
  assert match, stdout
  assert int(match.group(1)) == size
  assert float(match.group(2)) == pytest.approx(8 * size / (40 * 56),
                                                abs=1e-4)
  assert tfc_sth("decompress", out, "-o", tmp_path / "y.png") == 0
  decoded = read_png_array(tmp_path / "y.png")
  assert float(match.group(3)) == pytest.approx(
      metrics.psnr(image, decoded), abs=0.01)
  assert "56x40" in stdout


def test_verbose_decompress(compressed, tmp_path, models_env, capsys):
  capsys.readouterr()
  assert tfc_sth("decompress", "-v", compressed, "-o", tmp_path / "y.png") == 0
  stdout = capsys.readouterr().out
  bpp = 8 * compressed.stat().st_size / (40 * 56)
  assert f"{bpp:.4f} bpp" in stdout and "56x40" in stdout


def test_grayscale_decodes_to_grayscale(tmp_path, smooth_image, png_bytes,
                                        models_env, read_png_array):
  gray = smooth_image(24, 40, seed=3, channels=1)
  (tmp_path / "gray.png").write_bytes(png_bytes(gray))
  assert tfc_sth("compress", tmp_path / "gray.png", "--model", models_env) == 0
  header, _ = bitstream.read_header(
      (tmp_path / "gray.png.tsth").read_bytes())
  assert header.channels == 1
  assert tfc_sth("decompress", tmp_path / "gray.png.tsth") == 0
  out = tmp_path / "gray.png.tsth.png"
  assert out.read_bytes()[25] == 0  # PNG color type: grayscale.
  assert read_png_array(out).shape == (24, 40, 1)


@pytest.mark.parametrize("height,width", [(1, 1), (3, 5), (70, 130)])
def test_odd_sizes_round_trip(tmp_path, smooth_image, png_bytes, models_env,
                              read_png_array, height, width):
  image = smooth_image(height, width, seed=4)
  (tmp_path / "x.png").write_bytes(png_bytes(image))
  assert tfc_sth("compress", tmp_path / "x.png", "--model", models_env) == 0
  assert tfc_sth("decompress", tmp_path / "x.png.tsth") == 0
  assert read_png_array(tmp_path / "x.png.tsth.png").shape == (
      height, width, 3)


# Existing outputs.

def test_compress_does_not_overwrite(photo, tmp_path, models_env, capsys):
  out = tmp_path / "x.tsth"
  out.write_bytes(b"precious")
  assert tfc_sth("compress", photo[0], "-o", out, "--model",
                 models_env) == cli.EXIT_ERROR
  line = _assert_one_error_line(capsys.readouterr().err)
  assert "exists" in line and "--force" in line
  assert out.read_bytes() == b"precious"
  assert _listing(tmp_path) == ["photo.png", "x.tsth"]
  assert tfc_sth("compress", photo[0], "-o", out, "--model", models_env,
                 "--force") == 0
  assert out.read_bytes().startswith(b"TSTH")
  assert _listing(tmp_path) == ["photo.png", "x.tsth"]


def test_decompress_does_not_overwrite(compressed, tmp_path, models_env,
                                       read_png_array, capsys):
  out = tmp_path / "y.png"
  out.write_bytes(b"precious")
  capsys.readouterr()
  assert tfc_sth("decompress", compressed, "-o", out) == cli.EXIT_ERROR
  line = _assert_one_error_line(capsys.readouterr().err)
  assert "exists" in line and "--force" in line
  assert out.read_bytes() == b"precious"
  assert tfc_sth("decompress", compressed, "-o", out, "--force") == 0
  assert read_png_array(out).shape == (40, 56, 3)


# Bad input: one line on stderr, a non-zero exit code, no output file.

def _bad_png_inputs(png_bytes, smooth_image):
  good = png_bytes(smooth_image(20, 20, seed=5))
  transparent = np.full((8, 8, 4), 255, np.uint8)
  transparent[2, 3, 3] = 0
  return {
      "missing": None,
      "empty": b"",
      "not_png": b"GIF89a not a png at all",
      "truncated_png": good[:len(good) // 2],
      "transparent_png": png_bytes(transparent),
  }


@pytest.mark.parametrize("case", ["missing", "empty", "not_png",
                                  "truncated_png", "transparent_png"])
@pytest.mark.parametrize("with_output", [False, True])
def test_compress_bad_input(tmp_path, png_bytes, smooth_image, models_env,
                            capsys, case, with_output):
  data = _bad_png_inputs(png_bytes, smooth_image)[case]
  path = tmp_path / "in.png"
  if data is not None:
    path.write_bytes(data)
  before = _listing(tmp_path)
  args = ["-o", tmp_path / "out.tsth"] if with_output else []
  assert tfc_sth("compress", path, "--model", models_env,
                 *args) == cli.EXIT_ERROR
  line = _assert_one_error_line(capsys.readouterr().err)
  assert str(path) in line
  assert _listing(tmp_path) == before


def _tsth_inputs(data, tiny_codec):
  flipped = bytearray(data)
  flipped[len(data) // 2] ^= 0x08
  header, payload = bitstream.read_header(data)
  strings, checksums = bitstream.unpack_strings(
      payload, tiny_codec.string_names, tiles=1)
  head = data[:len(data) - len(payload) - 4]  # Without checksum and payload.
  fake = dataclasses.replace(header,
                             model_id="mean_scale_hyperprior-000000000000")
  return {
      "empty": (b"", "bad magic"),
      "png": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "bad magic"),
      "truncated_header": (data[:20], "truncated"),
      "truncated": (data[:-5], "checksum"),
      "bit_flip": (bytes(flipped), "checksum"),
      "unknown_model": (bitstream.pack(fake, strings, checksums),
                        "not installed"),
      "empty_payload": (head + struct.pack(">I", zlib.crc32(head)),
                        "corrupted payload"),
  }


@pytest.mark.parametrize("case", [
    "empty", "png", "truncated_header", "truncated", "bit_flip",
    "unknown_model", "empty_payload", "missing"])
def test_decompress_bad_input(compressed, tmp_path, tiny_codec, models_env,
                              capsys, case):
  path = tmp_path / "in.tsth"
  if case != "missing":
    data, message = _tsth_inputs(compressed.read_bytes(), tiny_codec)[case]
    path.write_bytes(data)
  else:
    message = "No such file"
  before = _listing(tmp_path)
  capsys.readouterr()
  assert tfc_sth("decompress", path, "-o",
                 tmp_path / "out.png") == cli.EXIT_ERROR
  line = _assert_one_error_line(capsys.readouterr().err)
  assert str(path) in line and message in line
  assert _listing(tmp_path) == before


def test_unknown_model_id_without_search_path(compressed, tmp_path,
                                              monkeypatch, capsys):
  monkeypatch.delenv("TFC_STH_MODELS", raising=False)
  capsys.readouterr()
  assert tfc_sth("decompress", compressed) == cli.EXIT_ERROR
  line = _assert_one_error_line(capsys.readouterr().err)
  assert "not installed" in line and "--model" in line
  assert not (tmp_path / "photo.tsth.png").exists()


def test_unknown_model_name(photo, tmp_path, models_env, capsys):
  assert tfc_sth("compress", photo[0], "--model",
                 "no-such-model") == cli.EXIT_ERROR
  line = _assert_one_error_line(capsys.readouterr().err)
  assert "unknown model 'no-such-model'" in line
  assert "tiny" in line  # The known models are listed.
  assert _listing(tmp_path) == ["photo.png"]


@pytest.mark.parametrize("argv,message", [
    (["frobnicate", "x.png"], "unknown command 'frobnicate'"),
    (["compress", "--bogus", "x.png"], "Unknown command line flag 'bogus'"),
    (["decompress", "--forc", "x.tsth"], "Did you mean: force"),
    (["compress", "-o"], "Missing value for flag -o"),
    (["compress"], "no input files"),
    (["decompress"], "no input files"),
    (["compress", "--force", "--model=tiny"], "no input files"),
])
def test_usage_errors(tmp_path, monkeypatch, capsys, argv, message):
  monkeypatch.chdir(tmp_path)
  assert tfc_sth(*argv) == cli.EXIT_USAGE
  captured = capsys.readouterr()
  line = _assert_one_error_line(captured.err)
  assert message in line
  assert captured.out == ""
  assert _listing(tmp_path) == []


def test_no_command_prints_usage(capsys):
  assert cli.main(["tfc-sth"]) == cli.EXIT_USAGE
  assert capsys.readouterr().err.startswith("usage: tfc-sth COMMAND")


def test_help(capsys):
  assert tfc_sth("compress", "--help") == 0
  out = capsys.readouterr().out
  assert "--[no]force" in out and "--model" in out and "--output" in out


# Several inputs, one bad: the others are still written.

def test_compress_one_bad_among_several(tmp_path, smooth_image, png_bytes,
                                        models_env, capsys):
  (tmp_path / "a.png").write_bytes(png_bytes(smooth_image(16, 16, seed=6)))
  (tmp_path / "b.png").write_bytes(b"not a png")
  (tmp_path / "c.png").write_bytes(png_bytes(smooth_image(20, 12, seed=7)))
  (tmp_path / "out").mkdir()
  inputs = [tmp_path / n for n in ("a.png", "b.png", "missing.png", "c.png")]
  assert tfc_sth("compress", *inputs, "-o", tmp_path / "out", "--model",
                 models_env) == cli.EXIT_ERROR
  err = capsys.readouterr().err
  lines = err.splitlines()
  assert len(lines) == 2 and "Traceback" not in err, err
  assert str(tmp_path / "b.png") in lines[0] and "not a PNG" in lines[0]
  assert str(tmp_path / "missing.png") in lines[1]
  assert _listing(tmp_path / "out") == ["a.png.tsth", "c.png.tsth"]
  for name in ("a.png.tsth", "c.png.tsth"):
    bitstream.read_header((tmp_path / "out" / name).read_bytes())


def test_decompress_one_bad_among_several(compressed, tmp_path, models_env,
                                          read_png_array, capsys):
  bad = tmp_path / "bad.tsth"
  bad.write_bytes(compressed.read_bytes()[:-1])
  (tmp_path / "out").mkdir()
  capsys.readouterr()
  assert tfc_sth("decompress", bad, compressed, "-o",
                 tmp_path / "out") == cli.EXIT_ERROR
  line = _assert_one_error_line(capsys.readouterr().err)
  assert str(bad) in line
  assert _listing(tmp_path / "out") == ["photo.tsth.png"]
  assert read_png_array(tmp_path / "out" / "photo.tsth.png").shape == (
      40, 56, 3)


@pytest.mark.parametrize("command", [
    ["models", "extra"],
    ["train", "--train_dir=unused", "--train_glob=unused", "extra"],
])
def test_commands_without_arguments_refuse_them(command, capsys):
  assert cli.main(["tfc-sth", *command]) == cli.EXIT_USAGE
  assert "unexpected arguments: extra" in capsys.readouterr().err


def test_bfloat16_of_a_model_without_it_is_a_one_line_error(
    photo, tmp_path, models_env, monkeypatch, capsys):
  from tfc_sth.runtime import codec  # pylint: disable=g-import-not-at-top
  # As a model exported before the bfloat16 signatures.
  monkeypatch.setattr(codec, "BFLOAT16_SIGNATURES", ("missing",))
  png, _ = photo
  assert tfc_sth("compress", png, "-o", tmp_path / "x.tsth", "--model",
                 models_env, "--precision=bfloat16") == cli.EXIT_ERROR
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and "no bfloat16 transforms" in err, err
  assert not (tmp_path / "x.tsth").exists()
  # auto falls back to float32.
  assert tfc_sth("compress", png, "-o", tmp_path / "x.tsth", "--model",
                 models_env) == 0
