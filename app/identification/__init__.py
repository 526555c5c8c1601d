"""The request path, one photo (or observation) through its stages in the order they run:

    request  ->  plan  ->  run  ->  decide.verdict/route  ->  place  ->  steer  ->  decide  ->  answer
    (what was  (models,   (decode   (per model: photos       (the      (filters,  (rank, no-match  (one
     asked)    filters)   once,     combined, scope;          request's, place)     reason, rollup)  answer
                          each      the model to believe)     else the                               type)
                          network                             photos')
                          once)

``service.Identifier.identify(request)`` runs them; the classifier endpoints, /v1/identify, the
CLI and collections all call it. ``lookup`` is the species index's answer (/img_url, and beside
the classifiers on /v1/identify). What is not on the request path (reloads, index writes,
calibration fitting, training, evaluation, GBIF linking) lives in ``app.services``.
"""
