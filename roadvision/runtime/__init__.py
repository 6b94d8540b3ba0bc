"""The runtime floor under training, evaluation and serving: devices and the one precision
policy, data set readers, and the one batched inference path with test-time augmentation.

It composes ``roadvision.data`` and ``roadvision.models`` and imports nothing above them, so
training and evaluation both stand on it without importing each other.
"""

# No re-exports: importing one piece (a forward worker imports only ``inference``) must not
# load the others' dependencies (the readers pull in pandas and pyarrow).
