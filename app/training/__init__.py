"""The research side: evaluate a model (classifier, head or index) on labelled photos, train a
head on frozen embeddings, map the embeddings. Needs the ``training`` extra (scikit-learn,
matplotlib); serving a trained head does not."""
