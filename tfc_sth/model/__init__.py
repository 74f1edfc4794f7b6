"""The model: transforms plus a latent codec, in which quantization lives.

quantization (modes), saun (Δ), entropy_models, exact (entropy parameters
that every machine computes alike), context_models, layers (tfc's, faster),
transforms (GDN), residual (Cheng et al.'s), latent_codecs, architectures
(the registry and the trainable model).
"""
