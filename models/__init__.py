"""Shipped SavedModels, installed with the package as `tfc_sth.shipped_models`.

Each subfolder is a SavedModel exported by `tfc_sth.export`, with a
`model.json` and a model card (`MODEL_CARD.md`).
"""
