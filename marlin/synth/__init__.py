"""A procedural world of talking faces with known ground truth (``marlin synth``)."""
from ..errors import require

require("cv2", "synth", "the synthetic world")
from .clip import Clip, render_item
from .dataset import generate_dataset, item_id, make_item, write_label_files
from .labels import ACTION, APPEARANCE, EXPRESSION, MANIPULATION, TASKS, sample_labels, split_of

__all__ = ["Clip", "render_item", "generate_dataset", "item_id", "make_item", "write_label_files", "ACTION",
           "APPEARANCE", "EXPRESSION", "MANIPULATION", "TASKS", "sample_labels", "split_of"]
