"""Choosing a band: fast (k_top, k_bottom) sweeps scored by retrieval (:mod:`.sweep`), the
label-free selection rules (:mod:`.rules`: isotropy, agreement, paper) and the analysis of
the top / middle / bottom bands (:mod:`.analysis`).

May import: :mod:`isoclip.common`, :mod:`isoclip.method`, :mod:`isoclip.evaluate`.
"""
