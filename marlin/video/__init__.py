"""Video input/output (PyAV) and the official sliding-window clip sampling."""
from .io import (VIDEO_EXTENSIONS, TruncatedVideoError, VideoError, VideoInfo, count_frames, find_videos, iter_frames,
                 output_dir, probe, read_frames, video_names, write_video)

__all__ = ["VideoError", "TruncatedVideoError", "VideoInfo", "probe", "iter_frames", "read_frames", "count_frames",
           "write_video", "find_videos", "video_names", "output_dir",
           "VIDEO_EXTENSIONS"]
