"""Labelling: the code that runs solves to make labels, offline.

- :mod:`~arbitrage.labelling.collect`: ``arbitrage collect``, oracle-labelled step pairs for router
  training, solved by the engine with the :class:`~arbitrage.labelling.recording.RecordingPolicy`;
- :mod:`~arbitrage.labelling.outcome`: grounded (outcome) labels, each candidate step continued to a
  graded answer;
- :mod:`~arbitrage.labelling.rollout`: Monte-Carlo rollout values, the ``mc`` step scorer
  (:func:`~arbitrage.labelling.rollout.load_scorer` knows ``mc`` beside every scorer of the PRM
  registry);
- :mod:`~arbitrage.labelling.evalset`: the real draft steps of the PRM evaluation set.

It stands above the engine (it runs it) and beside evaluation; the PRM and router packages below hold
the data formats and never import it.
"""
