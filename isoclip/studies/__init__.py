"""What the book's chapters compute, one module per study, on any model: the shared
per-world features and sanity metrics (:mod:`.world`), the modality-gap study (:mod:`.gap`),
modality inversion (:mod:`.inversion`; a dataset's query budget: :mod:`.dataset_inversion`),
intra-modal retrieval (:mod:`.retrieval`),
classification (:mod:`.classification`), latency (:mod:`.latency`), ablations
(:mod:`.ablations`), the regime study (:mod:`.regimes`), the paper's reference numbers
(:mod:`.reference`), result files of real-path runs (:mod:`.results`), the random-init
control of a real model (:mod:`.controls`), the verdict rules of the claims page
(:mod:`.verdicts`), the book's plotting style (:mod:`.plotting`) and tables
(:mod:`.report`), the fine-grained evaluation suites in the paper's table layout
(:mod:`.suite`), the data-scale axis of the regime study (:mod:`.data_scale`), and the model
manifest (:mod:`.manifest`): every model the book and the tests load, declared once and trained
by ``make models`` in parallel processes before any notebook runs.

May import: every other layer.
"""
