"""tfc-sth: soft-then-hard quantization for learned image compression on tfc.

Modules, in the order of the method: `quantization` (modes), `saun` (Δ),
`entropy_models`, `transforms`, `latent_codecs`, `architectures`,
`schedule` (the two-phase fit), `data`, `training`, `export`, `bitstream`,
`codec`, `image_io`, `pretrained`, `cli`.

Submodules are imported on use, so that `import tfc_sth` stays cheap.
"""

__version__ = "0.1.0"
