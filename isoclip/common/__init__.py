"""Infrastructure every layer may use: the on-disk cache (atomic writes, keys hashed from
everything that changes an entry), the ``Modality`` type and its check, and a context manager
that pins torch's thread count, and the few ``torch.distributed`` collectives of multi-process
runs started by torchrun (:mod:`.dist`: shard, gather, cached builds run by every rank).

May import: nothing of isoclip.
"""
