"""Infrastructure every layer may use: the on-disk cache (atomic writes, keys hashed from
everything that changes an entry), the ``Modality`` type and its check, and a context manager
that pins torch's thread count.

May import: nothing of isoclip.
"""
