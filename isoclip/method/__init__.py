"""The paper's method, independent of any dataset or evaluation: the projectors W_i, W_t and
the pre-projection encoders of each open_clip family (:mod:`.projectors`), the inter-modal
operator Psi = W_i^T W_t with Psi_i, Psi_t and its SVD (:mod:`.operator`), bands and the
IsoCLIP projectors Ŵ_i, Ŵ_t (:mod:`.bands`), and the split of the CLIP loss gradient into
inter- and intra-modal terms (:mod:`.gradients`). Equations: the book's notation page.

May import: :mod:`isoclip.common`.
"""
