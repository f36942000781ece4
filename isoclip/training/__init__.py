"""Training tiny CLIP models from scratch on CPU: the trainer (:mod:`.trainer`), the
training-time variants of the book (:mod:`.variants`: fixed temperature, SharedCLIP, IMSep,
ATP + CU) and the embedded default (:mod:`.embedded`: the book's world and model).

May import: every layer below :mod:`isoclip.studies`.
"""
