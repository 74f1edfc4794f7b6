"""The runtime: coding files through an exported SavedModel.

bitstream (the .tsth container), codec, image_io (PNG in and out),
pretrained (finding models). Imports tensorflow and tensorflow_compression
only, nothing of the model code (tests/test_runtime.py).
"""
