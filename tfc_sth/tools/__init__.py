"""Tools that measure: evaluate, anchors (classical codecs), metrics,
bench (speed and memory), fuzz (mutated files). Use the runtime, and
training for bench.
"""
