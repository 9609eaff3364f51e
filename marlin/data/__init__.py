"""Data on disk: the preprocessed face-clip layout and datasets built on it."""
from .layout import FaceItem, PARSE_CLASSES, list_items, load_item, write_item, item_dir, is_item

__all__ = ["FaceItem", "PARSE_CLASSES", "list_items", "load_item", "write_item", "item_dir", "is_item"]
