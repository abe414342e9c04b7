"""Tuning with one budget for every method: search spaces declared by the methods
(``space``), Optuna studies on the validation split that resume from their SQLite
storage (``study``, ``objective``), and the tuned-values file that ``run --tuned``
applies (``tuned``)."""
