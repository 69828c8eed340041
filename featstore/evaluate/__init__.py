from featstore.evaluate.classify import ClassifierSpec, evaluate_classification  # noqa: F401
