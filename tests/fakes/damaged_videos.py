"""The damaged videos a user may hand to predict or the extractor, made from a good mp4: an empty file, a text file
named .mp4, the mp4 cut in half (its index, written at the end, is lost: nothing opens), and the mp4 remuxed with its
index first (ffmpeg's -movflags +faststart, as web videos are) and then cut in the middle of its frames' data: that
one opens, declares every frame and decodes only the first part of them."""

import pathlib

import av


def faststart(source: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  """`source` remuxed (packets copied, nothing re-encoded) with the index before the data."""
  with av.open(str(source)) as src, av.open(str(out), "w", options={"movflags": "faststart"}) as dst:
    stream = src.streams.video[0]
    copy = dst.add_stream_from_template(stream)
    for packet in src.demux(stream):
      if packet.dts is None:  # the demuxer's flush packet
        continue
      packet.stream = copy
      dst.mux(packet)
  return out


def make(source: pathlib.Path, folder: pathlib.Path) -> dict[str, pathlib.Path]:
  """{"empty", "text", "half", "faststart_half"} -> the damaged files, written into `folder`."""
  folder.mkdir(parents=True, exist_ok=True)
  paths = {name: folder / f"{name}.mp4" for name in ("empty", "text", "half", "faststart_half")}
  paths["empty"].write_bytes(b"")
  paths["text"].write_text("this is a text file, not a video\n")
  data = source.read_bytes()
  paths["half"].write_bytes(data[:len(data) // 2])
  whole = faststart(source, folder / "faststart.mp4").read_bytes()
  data_start = whole.index(b"mdat") + 4  # half of the frames' data, whatever the size of the index before it
  paths["faststart_half"].write_bytes(whole[:data_start + (len(whole) - data_start) // 2])
  (folder / "faststart.mp4").unlink()
  return paths
