"""The procedurally generated image-caption world of the embedded default: shared primitives
(:mod:`.primitives`: shapes, colours, templates, rendering constants), its configuration
(:mod:`.config`), the single-object world and the splits (:mod:`.synthetic`) and the
compositional scenes (:mod:`.compositional`).

May import: :mod:`isoclip.common`, :mod:`isoclip.data.base`.
"""
