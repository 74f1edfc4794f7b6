"""tfc-sth: soft-then-hard quantization for learned image compression on tfc.

One sub-package per side (an arrow: may import):

  model/     quantization (modes), saun (Δ), entropy_models, exact,
             context_models, layers, transforms, residual, latent_codecs,
             architectures
  training/  data, schedule (strategies as phases), distribute
             (tf.distribute), trainer, ablation
             -> model, export (ablation -> tools, to evaluate its runs)
  export     SavedModel signatures, model card -> model, runtime
  runtime/   bitstream, codec, image_io, pretrained (model lookup)
             -> tensorflow and tensorflow_compression only
  tools/     evaluate, anchors, metrics, bench, fuzz -> runtime, training
  cli        parses and dispatches

Submodules are imported on use, so that `import tfc_sth` stays cheap.
"""

__version__ = "0.1.0"
