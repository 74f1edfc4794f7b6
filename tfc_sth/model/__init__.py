"""The model: transforms plus a latent codec, in which quantization lives.

quantization (modes), saun (Δ), entropy_models, exact (entropy parameters
that every machine computes alike), context_models, transforms,
latent_codecs, architectures (the registry and the trainable model).
"""
