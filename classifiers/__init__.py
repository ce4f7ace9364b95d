"""Topic classification for newswatch: plain scikit-learn, no Beam import.

`corpus` reads and splits the labeled examples, `topic_model` is the model that the
pipeline and `newswatch annotate` load, `train` and `evaluate` are the `make train` and
`make eval` entry points.
"""

TOPICS = ("ceasefire", "humanitarian_aid", "diplomatic_visit")
