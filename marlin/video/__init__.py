"""Video input/output (PyAV) and the official sliding-window clip sampling."""
from .io import VideoError, VideoInfo, probe, iter_frames, read_frames, count_frames, write_video, find_videos, VIDEO_EXTENSIONS

__all__ = ["VideoError", "VideoInfo", "probe", "iter_frames", "read_frames", "count_frames", "write_video",
           "find_videos", "VIDEO_EXTENSIONS"]
