"""predict prepares a clip exactly as evaluation does: same example arrays, same logits; the windows of online
recognition are the converter's records; the command line end to end on a tiny synthetic dataset, and the video
--render writes; damaged videos, a video without a person (extracted by data_prep/extract_pose.py with a stand-in
tracker where mediapipe is not installed)."""

import json
import pathlib
import subprocess
import sys

import av
import jax
import numpy as np
import pytest

import damaged_videos  # tests/fakes
from clipmg_jax.data import input_setup
from clipmg_jax.data.raw import imigue
from clipmg_jax.data.raw import video as video_io
from clipmg_jax.data.records import clip_record
from clipmg_jax.data.records import example_codec
from clipmg_jax.data.records import layouts
from clipmg_jax.figures import video as video_figure
from clipmg_jax.prediction import online
from clipmg_jax.prediction import pose
from clipmg_jax.prediction import predictor as predictor_lib
from clipmg_jax.prediction import recognize
from clipmg_jax.prediction import records
from clipmg_jax.training import checkpointing
from clipmg_jax.training import defaults
from clipmg_jax.training import evaluation
from clipmg_jax.training import trainer
from configs import synthetic as synthetic_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# A tiny CLIP-MG (32 x 32 crops, 8 x 8 heatmaps): compiles in seconds on a CPU.
TINY = {
    "batch_size": 8, "eval_batch_size": 8,
    "model.vit.width": 16, "model.vit.layers": 2, "model.vit.heads": 2, "model.vit.mlp_dim": 32,
    "model.vit.image_size": 32, "model.trainable_blocks": 2, "model.heatmap.resolution": 8,
    "model.skeleton.features": (4, 8, 8), "model.skeleton.num_groups": 4, "model.skeleton.embed_dim": 16,
    "model.skeleton.strides": ((2, 2, 2), (2, 2, 2), (1, 1, 1)), "model.head.hidden_dim": 16,
    "data.image_size": 32, "data.worker_count": 0, "data.synthetic.preset": "tiny",
    "data.validation.num_subjects": 1, "data.synthetic.convert_workers": 0,
}
TINY_OVERRIDES = [f"--config.{k}={v}" for k, v in TINY.items() if not isinstance(v, tuple)] + [
    "--config.model.skeleton.features=(4,8,8)", "--config.model.skeleton.strides=((2,2,2),(2,2,2),(1,1,1))"]


# The tiny run's model: the synthetic config without robust fusion (its default has it), so that a clip without a
# person meets the paper's NothingToClassifyError; the robust model has a test and a checkpoint of its own.
NOT_ROBUST = "full+extras"


def tiny_config(cache: pathlib.Path):
  config = synthetic_config.get_config(NOT_ROBUST)
  defaults.override(config, {**TINY, "data.synthetic.cache_dir": str(cache)})
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny synthetic dataset (generated and converted by the trainer's data setup) and a checkpoint of a tiny
  model with random parameters in <workdir>/checkpoints (parity needs no training). The parameters are drawn with
  numpy into the state's abstract shapes: compiling the model's initialisation would cost more than the tests."""
  workdir = tmp_path_factory.mktemp("predict_run")
  config = tiny_config(workdir / "synthetic_data")
  data = input_setup.make_data_source(config, workdir)
  _random_checkpoint(config, data, workdir)
  return input_setup.run_config(config, data), workdir, data  # the config with the data block the run resolved


def _random_checkpoint(config, data, workdir: pathlib.Path) -> None:
  """Checkpoint 1 of `config`'s model in <workdir>/checkpoints with parameters drawn by numpy into the state's
  abstract shapes (compiling the model's initialisation would cost more than the tests)."""
  setup = trainer.Setup(config, data)
  rng = np.random.default_rng(0)

  def draw(leaf):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      return jax.random.key(0)
    kind = np.dtype(leaf.dtype).kind
    value = rng.normal(0.0, 0.3, leaf.shape) if kind == "f" else np.zeros(leaf.shape)
    return jax.device_put(np.asarray(value, leaf.dtype), leaf.sharding)

  ckpt = checkpointing.Checkpointer(workdir / "checkpoints")
  ckpt.save(1, jax.tree.map(draw, setup.abstract_state), None)
  ckpt.close()


@pytest.mark.slow
def test_predict_gives_the_evaluation_examples_and_logits(run):
  config, workdir, data = run
  predictor = predictor_lib.Predictor(tiny_config(workdir / "synthetic_data"), workdir)
  raw = pathlib.Path(config.data.synthetic.raw_dir)
  clips = {c.clip_id: c for c in imigue.read_labels(raw / "labels.csv")}
  # Evaluation: the test split through the Grain pipeline and the evaluation step.
  batch = next(iter(data.eval_batches()))
  reference = evaluation.predict(predictor.params, predictor.setup.eval_step, [batch], predictor.setup.mesh,
                                 predictor.batch_size, progress=False)
  decoder, options = predictor.decoder(), predictor.convert_options()
  examples = []
  for row, clip_id in enumerate(batch["clip_id"].tolist()):
    clip = clips[clip_id]
    example = records.clip_example(decoder, options, raw / "videos" / f"{clip.video_id}.mp4", raw / "skeleton",
                                   clip.video_id, clip.start_frame, clip.end_frame)
    np.testing.assert_array_equal(example["frames"], batch["frames"][row])
    np.testing.assert_array_equal(example["keypoints"], batch["keypoints"][row])
    examples.append(example)
  logits = predictor.logits(examples, progress=False)
  assert len(logits) == len(batch["clip_id"]) >= 4
  np.testing.assert_allclose(logits, reference["logits"], rtol=0, atol=1e-6)
  assert np.ptp(logits, axis=0).max() > 1e-4  # different clips, different logits: the comparison is not vacuous


def test_window_records_are_the_converter_records(run):
  config, workdir, _ = run
  predictor = predictor_lib.Predictor(tiny_config(workdir / "synthetic_data"), workdir)
  raw = pathlib.Path(config.data.synthetic.raw_dir)
  options = predictor.convert_options()
  assert options.short_side == config.data.synthetic.convert_options.short_side  # read from the manifest
  video_id = imigue.read_labels(raw / "labels.csv")[0].video_id
  video = raw / "videos" / f"{video_id}.mp4"
  num_frames = records.count_video_frames(video)
  starts = online.window_starts(num_frames, 24, 16)
  compared = 0
  for i, record in records.window_records(video, raw / "skeleton", video_id, starts, 24, options):
    start = int(starts[i])
    task = layouts.ClipTask(split="predict", video_id=video_id, label_id=0, clip_id=0, label=0, subject=-1,
                            start_frame=start, end_frame=start + 23, layout="imigue", skeleton=str(raw / "skeleton"),
                            video=str(video))
    expected, _ = clip_record.make_record(task, options)
    assert example_codec.encode(record) == example_codec.encode(expected)
    compared += 1
  assert compared == len(starts) >= 3


def _decoded(path: pathlib.Path) -> tuple[int, tuple[int, int], str]:
  """(frames, (height, width), codec) of a video, counted by decoding it (every frame has the one size)."""
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    sizes = [(f.height, f.width) for f in container.decode(stream)]
    codec = stream.codec_context.name
  assert len(set(sizes)) == 1
  return len(sizes), sizes[0], codec


def _predict_command(workdir: pathlib.Path, *args, config_arg: str = NOT_ROBUST) -> list[str]:
  """`python -m clipmg_jax.predict` on the tiny run in `workdir`, with the flags `args` (and the config file's
  argument `config_arg`, e.g. "full+extras+robust": the tiny run's parameters fit every addition)."""
  config = f"{REPO_ROOT / 'configs' / 'synthetic.py'}:{config_arg}"
  return [sys.executable, "-m", "clipmg_jax.predict", f"--config={config}",
          f"--workdir={workdir}", f"--config.data.synthetic.cache_dir={workdir / 'synthetic_data'}", *TINY_OVERRIDES,
          *map(str, args)]


@pytest.mark.slow
def test_render_writes_the_annotated_clip(run, tmp_path):
  config, workdir, _ = run
  raw = pathlib.Path(config.data.synthetic.raw_dir)
  clip = imigue.read_labels(raw / "labels.csv")[0]
  video = raw / "videos" / f"{clip.video_id}.mp4"
  out, render = tmp_path / "clip", tmp_path / "clip.mp4"
  cmd = _predict_command(workdir, f"--video={video}", f"--skeleton_dir={raw / 'skeleton'}",
                         f"--start_frame={clip.start_frame}", f"--end_frame={clip.end_frame}", f"--out={out}",
                         f"--render={render}")
  done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
  info = video_io.video_info(video)
  frames, (height, width), codec = _decoded(render)
  assert frames == clip.num_frames
  # The frame scaled to a height in [MIN_HEIGHT, MAX_HEIGHT] (even), the panel on its right.
  expected = min(max(info["height"], video_figure.MIN_HEIGHT), video_figure.MAX_HEIGHT)
  assert height % 2 == 0 and abs(height - expected) <= 1
  assert abs(width - video_figure.PANEL_WIDTH - info["width"] * height / info["height"]) <= 2
  assert codec in ("h264", "mpeg4") and f"({video_io.first_encoder()})" in done.stdout
  # The top class in the JSON is the one the panel shows first; the frames are not blank.
  assert json.loads((out / f"{clip.video_id}.json").read_text())["top"][0]["probability"] > 0
  with av.open(str(render)) as container:
    first = next(container.decode(container.streams.video[0])).to_ndarray(format="rgb24")
  assert first[:, -video_figure.PANEL_WIDTH:].std() > 5 and first[:, :-video_figure.PANEL_WIDTH].std() > 5


@pytest.mark.slow
def test_online_command_scores_the_test_videos(run, tmp_path):
  config, workdir, _ = run
  raw = pathlib.Path(config.data.synthetic.raw_dir)
  out = tmp_path / "online"
  test_subjects = set(imigue.load_split(raw)[1])
  first_video = min({c.video_id for c in imigue.read_labels(raw / "labels.csv") if c.subject in test_subjects},
                    key=lambda v: (len(v), v))  # --max_videos=1 takes the first in this order
  cmd = _predict_command(workdir, "--online", f"--raw_root={raw}", "--split=test", "--max_videos=1", "--window=16",
                         "--stride=8", "--threshold=0.0", "--sweep=0.0,1.01", f"--plot_video={first_video}",
                         f"--out={out}", f"--render={out / 'online.mp4'}")
  done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
  summary = json.loads((out / "online_test.json").read_text())
  video_id = summary["videos"][0]
  truth = [c for c in imigue.read_labels(raw / "labels.csv") if c.video_id == video_id]
  assert summary["scores"]["ground_truth"] == len(truth)
  # Threshold 0: every window is active for its best class, so segments cover the whole video; above 1: nothing.
  rows = (out / "online_test.segments.csv").read_text().splitlines()[1:]
  covered = sorted((int(r.split(",")[1]), int(r.split(",")[2])) for r in rows)
  assert covered[0][0] == 0 and covered[-1][1] == summary["frames"] - 1
  by_threshold = {e["threshold"]: e for e in summary["sweep"]}
  assert by_threshold[1.01]["recall"] == 0.0 and by_threshold[1.01]["precision"] == 0.0
  assert (out / "windows" / f"{video_id}.npz").is_file()
  assert video_id == first_video and (out / f"online_{video_id}.png").stat().st_size > 1000
  # The whole video rendered, a timeline under the frames and panel.
  frames, (height, width), _ = _decoded(out / "online.mp4")
  assert frames == summary["frames"] and height > video_figure.MIN_HEIGHT and width > video_figure.PANEL_WIDTH


@pytest.mark.slow
def test_predict_extract_pose_on_a_real_clip(run, tmp_path):
  videos = sorted((REPO_ROOT.parent / "shared" / "videos").glob("*.mp4"))
  if not videos:
    pytest.skip(f"no real clips in {REPO_ROOT.parent / 'shared' / 'videos'} (shared material, not in a clone)")
  if not pose.POSE_PYTHON.is_file():
    pytest.skip(f"pose environment absent ({pose.POSE_PYTHON}): `bash scripts/pose_env.sh` makes it (scripts/test.sh "
                f"does, unless CLIPMG_TEST_POSE=0 or it cannot be made here)")
  _, workdir, _ = run
  video = videos[0]
  cmd = _predict_command(workdir, f"--video={video}", "--extract_pose", f"--out={tmp_path}")
  done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
  result = json.loads((tmp_path / f"{video.stem}.json").read_text())
  assert len(list((tmp_path / "skeleton" / video.stem).glob("*_keypoints.json"))) == result["end_frame"] + 1
  assert len(result["top"]) == 5 and sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)
  probs = [t["probability"] for t in result["top"]]
  assert probs == sorted(probs, reverse=True) and probs[0] == pytest.approx(max(result["probabilities"]), abs=1e-6)
  for rank, entry in enumerate(result["top"], 1):
    assert f"{rank}. class {entry['class']:2d} {entry['name']}" in done.stdout


# --- Bad videos: one message each, or (a file cut short) the frames that decode, said. ------------------------------


def _fake_pose_python(folder: pathlib.Path) -> pathlib.Path:
  """A --pose_python that runs data_prep/extract_pose.py with the stand-in tracker (tests/fakes/pose/mediapipe)."""
  path = folder / "pose_python"
  # Prepended, not replacing: the PYTHONPATH predict gives the extractor names the repository root it runs from.
  path.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO_ROOT / "tests" / "fakes" / "pose"}${{PYTHONPATH:+:$PYTHONPATH}}" '
                  f'exec "{sys.executable}" "$@"\n')
  path.chmod(0o755)
  return path


def _predict(workdir: pathlib.Path, video: pathlib.Path, out: pathlib.Path, *args) -> subprocess.Popen:
  return subprocess.Popen(_predict_command(workdir, f"--video={video}", f"--out={out}", *args), cwd=REPO_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_bad_videos_are_one_message_and_a_cut_one_is_predicted_on_its_frames(run, tmp_path):
  config, workdir, _ = run
  raw = pathlib.Path(config.data.synthetic.raw_dir)
  clip = imigue.read_labels(raw / "labels.csv")[0]
  intact = raw / "videos" / f"{clip.video_id}.mp4"
  bad = damaged_videos.make(intact, tmp_path / "bad")
  pose_python = _fake_pose_python(tmp_path)
  nobody = tmp_path / "nobody" / clip.video_id  # OpenPose JSON of a video in which no one was found
  nobody.mkdir(parents=True)
  for frame in range(records.count_video_frames(intact)):
    (nobody / f"{clip.video_id}_{frame:012d}_keypoints.json").write_text('{"version": 1.3, "people": []}')
  video_io.write_video(tmp_path / "gray.mp4", [np.full((32, 32, 3), 128, np.uint8)] * 12, codec="mpeg4")
  declared, readable = video_io.readable_frames(bad["faststart_half"])
  assert declared == records.count_video_frames(intact) and 2 < readable < declared
  skeletons = f"--skeleton_dir={raw / 'skeleton'}"
  extract = ("--extract_pose", f"--pose_python={pose_python}")
  probes = {  # name -> (video, extra flags)
      **{f"{name} skeleton_dir": (bad[name], [skeletons]) for name in ("empty", "half")},
      "text extract_pose": (bad["text"], extract),
      "cut skeleton_dir": (bad["faststart_half"], [skeletons, f"--video_id={clip.video_id}"]),
      "cut extract_pose": (bad["faststart_half"], extract),
      "cut past its end": (bad["faststart_half"], [skeletons, f"--video_id={clip.video_id}", f"--end_frame={declared - 1}"]),
      "no person skeleton_dir": (intact, [f"--skeleton_dir={tmp_path / 'nobody'}"]),
      "no person extract_pose": (tmp_path / "gray.mp4", extract),
  }
  running = {name: _predict(workdir, video, tmp_path / name.replace(" ", "_"), *flags)
             for name, (video, flags) in probes.items()}
  done = {name: (proc.wait(timeout=600), *proc.communicate()) for name, proc in running.items()}
  for name, (code, out, err) in done.items():
    assert "Traceback" not in err, (name, err[-3000:])
    if not name.startswith("cut ") or name == "cut past its end":
      assert code == 1, (name, out, err[-2000:])
  for name in ("empty skeleton_dir", "half skeleton_dir", "text extract_pose"):
    video = probes[name][0]
    assert done[name][2].strip() == f"UnreadableVideoError: {video}: cannot be read as a video (Invalid data found " \
                                    "when processing input)", name
  for name in ("no person skeleton_dir", "no person extract_pose"):
    video = probes[name][0]
    last = done[name][2].strip().splitlines()[-1]  # after the checkpoint's log line
    assert last.startswith(f"NothingToClassifyError: {video} frames 0..") and "no person" in last, done[name]
    assert last.endswith(records.NO_POSE_HINT), last  # the paper's model says what could answer
  assert done["cut past its end"][2].strip() == (
      f"FrameRangeError: {bad['faststart_half']}: frames 0..{declared - 1} asked for, but only frames 0..{readable - 1} decode "
      f"of the {declared} its header declares (damaged or cut short)")
  # The cut video: its frames that decode, said, and classified as the intact video's same frames are.
  predictor = predictor_lib.Predictor(tiny_config(workdir / "synthetic_data"), workdir)
  for name, skeleton_dir in (("cut skeleton_dir", raw / "skeleton"),
                             ("cut extract_pose", tmp_path / "cut_extract_pose" / "skeleton")):
    code, out, err = done[name]
    assert code == 0, (name, out, err[-3000:])
    assert (f"warning: {bad['faststart_half']}: only frames 0..{readable - 1} decode of the {declared} its header "
            f"declares (damaged or cut short); using frames 0..{readable - 1}") in out, (name, out)
    video_id = clip.video_id if name == "cut skeleton_dir" else "faststart_half"
    result = json.loads((tmp_path / name.replace(" ", "_") / f"{video_id}.json").read_text())
    assert result["end_frame"] == readable - 1
    expected = recognize.clip_probabilities(predictor, intact, skeleton_dir, video_id, 0, readable - 1)
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-5)
  assert len(list((tmp_path / "cut_extract_pose" / "skeleton" / "faststart_half").glob("*.json"))) == readable


def _nobody_skeletons(video_id: str, num_frames: int, root: pathlib.Path) -> pathlib.Path:
  """OpenPose JSON of a video in which no one was found, under root/<video_id>/; returns root."""
  (root / video_id).mkdir(parents=True)
  for frame in range(num_frames):
    (root / video_id / f"{video_id}_{frame:012d}_keypoints.json").write_text('{"version": 1.3, "people": []}')
  return root


@pytest.mark.slow
def test_a_robust_model_classifies_a_clip_and_windows_without_a_person(run, tmp_path):
  """+robust: the clip no one was found in gets a top-5 and one warning with its pose reliability, and online every
  window is classified (none left out); the same clip with the paper's model is the named error (test above)."""
  config, main_workdir, data = run
  raw = pathlib.Path(config.data.synthetic.raw_dir)
  clip = imigue.read_labels(raw / "labels.csv")[0]
  video = raw / "videos" / f"{clip.video_id}.mp4"
  nobody = _nobody_skeletons(clip.video_id, records.count_video_frames(video), tmp_path / "nobody")
  robust = "full+extras+robust"
  workdir = tmp_path / "robust_run"  # a checkpoint of the robust model, on the tiny run's dataset
  robust_config = synthetic_config.get_config(robust)
  defaults.override(robust_config, {**TINY, "data.synthetic.cache_dir": str(main_workdir / "synthetic_data")})
  _random_checkpoint(robust_config, data, workdir)
  (workdir / "synthetic_data").symlink_to(main_workdir / "synthetic_data")
  clip_run = subprocess.run(_predict_command(workdir, f"--video={video}", f"--skeleton_dir={nobody}",
                                             f"--out={tmp_path / 'clip'}", config_arg=robust),
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert clip_run.returncode == 0, clip_run.stderr[-3000:]
  lines = clip_run.stdout.splitlines()
  warnings = [l for l in lines if l.startswith("warning:")]
  assert warnings == [f"warning: {video} frames 0..{records.count_video_frames(video) - 1}: pose reliability 0.00 "
                      "(no usable joint): classified from vision alone"], clip_run.stdout
  assert sum(l.startswith(f"  {rank}. class") for rank in range(1, 6) for l in lines) == 5, clip_run.stdout
  result = json.loads((tmp_path / "clip" / f"{clip.video_id}.json").read_text())
  assert result["pose_reliability"] == 0.0 and len(result["top"]) == 5
  online_run = subprocess.run(_predict_command(workdir, f"--video={video}", f"--skeleton_dir={nobody}", "--online",
                                               "--window=8", "--stride=8", f"--out={tmp_path / 'online'}",
                                               config_arg=robust),
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert online_run.returncode == 0, online_run.stderr[-3000:]
  summary = json.loads((tmp_path / "online" / f"{clip.video_id}.segments.json").read_text())
  windows = len(online.window_starts(records.count_video_frames(video), 8, 8))
  assert summary["unclassified_windows"] == 0 and summary["windows_classified_without_pose"] == windows
  assert [l for l in online_run.stdout.splitlines() if l.startswith("warning:")] == [
      f"warning: {windows} of {windows} window(s) had no usable joint (pose "
      "reliability 0.00): classified from vision alone"], online_run.stdout


@pytest.mark.slow
def test_an_unknown_clip_id_is_one_message_naming_the_split_and_list(run, tmp_path):
  _, workdir, _ = run
  config = f"{REPO_ROOT / 'configs' / 'synthetic.py'}:{NOT_ROBUST}"
  cmd = [sys.executable, "-m", "clipmg_jax.inspect_clip", f"--config={config}", f"--workdir={workdir}",
         f"--config.data.synthetic.cache_dir={workdir / 'synthetic_data'}", *TINY_OVERRIDES, "--clip_id=999999999",
         f"--out={tmp_path / 'inspect'}"]
  done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  output = done.stdout + done.stderr
  assert done.returncode != 0 and "Traceback" not in output, output[-3000:]
  assert "999999999" in output and "--list prints the clip ids of --split=" in output, output[-3000:]
  assert not (tmp_path / "inspect" / "inspect.json").exists()
