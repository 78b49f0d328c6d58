"""The Arbitrage Router: step-pair data, router training, evaluation and routing.

Collecting the labelled step pairs runs the engine, so it lives above, in :mod:`arbitrage.labelling`.
"""
