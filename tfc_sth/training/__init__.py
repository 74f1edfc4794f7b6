"""Training: data pipelines, strategies as phases, runs, the ablation.

data, schedule (each strategy's phases and the switch between them),
distribute (tf.distribute strategies, chief and shards), trainer (one
resumable run), ablation. May import the model and export.
"""
