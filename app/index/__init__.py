"""The species lookup behind /img_url: photo -> embedding -> PCA -> FAISS neighbours -> species vote.

An index is a folder of plain artefacts (FAISS's own file format, numpy arrays, JSON; no
pickles) that names the embedder it was built with, so a server refuses an index whose vectors
came from another model.
"""
