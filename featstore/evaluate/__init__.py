from featstore.evaluate.classify import (  # noqa: F401
    ClassifierSpec,
    classify_arrays,
    evaluate_classification,
)
