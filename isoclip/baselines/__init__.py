"""What IsoCLIP is compared with: modality inversion (OTI / OVI of Cross the Gap,
:mod:`.inversion`; many targets in resumable batches, sharded over torchrun ranks:
:mod:`.inversion_runner`), training-free feature transforms (whitening, mean-centring,
pre-projection, random bands: :mod:`.whitening`) and the training-time losses (CLIP, IMSep,
ATP, CU: :mod:`.losses`).

May import: :mod:`isoclip.common`, :mod:`isoclip.method`.
"""
