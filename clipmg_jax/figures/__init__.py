"""Every figure of the project, drawn in one place.

  canvas.py      pyplot as it is (notebooks show figures inline) or on Agg (files only); save-and-close; a figure
                 as an RGB array
  clip_views.py  one clip as the model sees it: skeleton, joint confidence, heatmaps, patch weights, gate,
                 attention, top classes, a strip of frames (inspect_clip and the notebooks)
  results.py     an evaluation: confusion matrix, accuracy per class or subject, the gate's histogram and its
                 relation to pose reliability (training's PNGs, evaluate and the notebooks)
  timeline.py    online segments over time, predicted against true (predict --plot_video, and the video's strip)
  overlay.py     drawing on video frames with PIL: the skeleton, the top classes as bars, the timeline's cursor
  video.py       predict --render: the annotated clip or video, written with PyAV

Figures return matplotlib Figures made with pyplot; code that only writes files calls canvas.files_only() first.
"""
