"""The toolkit's version (read by setuptools without importing the package; written into the files it makes)."""
__version__ = "0.1.0"
