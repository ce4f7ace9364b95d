"""ClassifyTopics: unique items -> Annotated items, through Beam's RunInference.

The model handler loads the joblib model once per worker and scores batches of items
(one `predict` per element is 10-20x slower than batches of a few hundred).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference

from classifiers.topic_model import TopicModel, load_model
from pipelines import telemetry
from pipelines.records import Annotated, Item

MAX_BATCH = 500


def annotate_topics(model: TopicModel, items: Sequence[Item]) -> list[Annotated]:
    predictions = model.predict([(item.title, item.text) for item in items])
    return [Annotated(item, p.topics, p.scores, p.terms, passages=p.passages) for item, p in zip(items, predictions, strict=True)]


class TopicModelHandler(ModelHandler[Item, Annotated, TopicModel]):
    def __init__(self, model_path: str):
        super().__init__()
        self._model_path = model_path

    def load_model(self) -> TopicModel:
        return load_model(self._model_path)

    def run_inference(self, batch: Sequence[Item], model: TopicModel, inference_args=None) -> Iterable[Annotated]:
        annotated = annotate_topics(model, batch)
        for result in annotated:
            telemetry.item_classified(result.topics)
        return annotated

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": MAX_BATCH}


class ClassifyTopics(beam.PTransform):
    """Item -> Annotated with topics, scores and the terms behind each topic."""

    def __init__(self, model_path: str):
        super().__init__()
        self._model_path = model_path

    def expand(self, items):
        return items | "RunInference" >> RunInference(TopicModelHandler(self._model_path))
